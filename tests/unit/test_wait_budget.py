"""A WaitBudget bounds the successive waits of one call together, not each of them."""

from __future__ import annotations

import asyncio
import time

import pytest

from bus.errors import PublishTimeout
from bus.kafka import WaitBudget


async def test_successive_waits_share_one_timeout() -> None:
    budget = WaitBudget(500)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await budget(asyncio.sleep(0.3, "sent"), "Sending") == "sent"
    with pytest.raises(PublishTimeout, match=r"^Acknowledging: no answer from Kafka within 500 ms"):
        await budget(asyncio.sleep(0.3), "Acknowledging")
    # Each wait alone fits the timeout; together they would not, and the second is cut short.
    assert 0.45 < loop.time() - started < 0.65


async def test_the_caller_own_work_between_waits_does_not_count() -> None:
    budget = WaitBudget(300)
    for _ in range(3):
        await budget(asyncio.sleep(0.05), "Sending")
        await asyncio.to_thread(time.sleep, 0.2)  # preparing the next batch: not waiting
    assert await budget(asyncio.sleep(0.05, "acked"), "Acknowledging") == "acked"


async def test_a_spent_budget_fails_the_next_wait_at_once() -> None:
    budget = WaitBudget(100)
    with pytest.raises(PublishTimeout):
        await budget(asyncio.sleep(1), "Sending")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PublishTimeout):
        await budget(asyncio.sleep(1), "Acknowledging")
    assert loop.time() - started < 0.05
