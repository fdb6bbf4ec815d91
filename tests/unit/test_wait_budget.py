"""A WaitBudget bounds the successive waits of one call together, not each of them."""

from __future__ import annotations

import asyncio
import time

import pytest

from bus.errors import PublishTimeout
from bus.kafka import WaitBudget


async def test_successive_waits_share_one_timeout() -> None:
    budget = WaitBudget(1000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await budget(asyncio.sleep(0.6, "sent"), "Sending") == "sent"
    cut_short = r"^Acknowledging: no answer from Kafka within 1000 ms"
    with pytest.raises(PublishTimeout, match=cut_short):
        await budget(asyncio.sleep(0.6), "Acknowledging")
    # Each wait alone fits the timeout; together they would not, and the second is cut short:
    # at the budget's end (never before it), well before both waits could have finished (1.2 s).
    # The upper bound leaves a busy machine's event loop most of that difference.
    assert 1.0 <= loop.time() - started < 1.19


async def test_the_caller_own_work_between_waits_does_not_count() -> None:
    # Four short waits (0.04 s in all) with a second of the caller's own work between them: a
    # budget that counted the work would be spent by the third wait; this one is barely touched.
    # The margin is wide so that a loaded machine's late wake-ups cannot spend it either.
    budget = WaitBudget(900)
    for _ in range(3):
        await budget(asyncio.sleep(0.01), "Sending")
        await asyncio.to_thread(time.sleep, 0.5)  # preparing the next batch: not waiting
    assert await budget(asyncio.sleep(0.01, "acked"), "Acknowledging") == "acked"


async def test_a_spent_budget_fails_the_next_wait_at_once() -> None:
    budget = WaitBudget(100)
    with pytest.raises(PublishTimeout):
        await budget(asyncio.sleep(1), "Sending")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PublishTimeout):
        await budget(asyncio.sleep(1), "Acknowledging")
    assert loop.time() - started < 0.5  # at once: not after the second's whole second
