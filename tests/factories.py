"""Realistic alerts for tests, made from the examples with fresh ids and chosen origins."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from bus.models import ALERT_MODELS, ALERT_TYPES, Alert

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "alerts"
_counter = itertools.count()


@cache
def example_json(alert_type: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{alert_type}.json").read_text("utf-8"))
    return data


def example_alert(alert_type: str) -> Alert:
    return ALERT_MODELS[alert_type].model_validate(example_json(alert_type))


def make_alert(
    alert_type: str,
    origin: str = "rs",
    *,
    tlp: str | None = None,
    case_ref: str | None = None,
    **header: Any,
) -> Alert:
    """The example of ``alert_type`` as a new alert from ``origin``, issued an hour ago.

    The examples date from 2014; their times are moved, keeping their spacing, so that the
    alert was issued an hour ago and has not expired (unless ``header`` says otherwise).
    """
    data = json.loads(json.dumps(example_json(alert_type)))
    n = next(_counter)
    _freshen(data["header"])
    data["header"].update(
        alert_id=header.pop("alert_id", None) or str(uuid.uuid4()),
        origin=origin,
        case_ref=case_ref if case_ref is not None else f"{origin.upper()}-T-{n}",
        **({"tlp": tlp} if tlp else {}),
        **header,
    )
    return ALERT_MODELS[alert_type].model_validate(data)


def _freshen(header: dict[str, Any]) -> None:
    issued = datetime.fromisoformat(header["issued_at"])
    shift = datetime.now(UTC) - timedelta(hours=1) - issued
    for name in ("issued_at", "occurred_at", "expires_at"):
        if header.get(name):
            header[name] = (datetime.fromisoformat(header[name]) + shift).isoformat()


def mixed_alerts(
    count: int, origins: tuple[str, ...] = ("rs", "mk", "al"), seed: int = 7
) -> list[Alert]:
    """``count`` alerts cycling through every type and the given origins."""
    rng = random.Random(seed)
    return [
        make_alert(ALERT_TYPES[i % len(ALERT_TYPES)], rng.choice(origins)) for i in range(count)
    ]
