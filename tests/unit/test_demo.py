"""`make demo` shows each inbox: run again on the same broker, its inboxes hold notices too."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import NamedTuple

import pytest

from bus import AlertCodec, BusSettings, SchemaRegistry
from bus.models import HitNotice
from examples.demo import show_inboxes
from tests.factories import make_alert


class Record(NamedTuple):
    headers: list[tuple[str, bytes]]
    value: bytes


def test_a_hit_notice_in_an_inbox_is_counted_as_a_notice_not_decoded_as_an_alert(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The joint index writes hit notices into the owners' inboxes: the first run of the demo
    # leaves some there, and the second showed them as alerts and stopped on decoding one.
    settings = BusSettings()
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    alert = make_alert("readmission", "gr")
    notice = HitNotice.for_owner(
        "rs", requester="europol", lookup_id=uuid.uuid4(), agreement_ids=["europol-rs"],
        alert_ids=[uuid.uuid4()], now=datetime.now(UTC),
    )  # fmt: skip
    inbox = [
        Record([("bus-type", b"readmission")], codec.encode(alert)),
        Record([("bus-type", b"hit-notice")], codec.encode_notice(notice)),
    ]
    show_inboxes(settings, ["rs"], {"rs": 0}, {"rs": inbox})
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│ rs")]
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    assert cells[:4] == ["rs", "2", "2", "1"]  # new, total, notices
    assert cells[4].startswith(f"readmission from gr, {str(alert.alert_id)[:8]}")
