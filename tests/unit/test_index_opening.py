"""Opening ingress for the index in worker processes: the same verdicts as the fan-out's check,
in the order given, whether the work is done in other processes or in the service's own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bus import BusSettings, generate_keypair
from bus.codec import AlertCodec
from bus.envelope import Stage, alert_headers
from bus.keys import Signer
from bus.models import Alert, IrregularCrossing
from bus.schemas import SchemaRegistry
from services.index.extract import IndexedAlert
from services.index.opening import IngressOpener, RawRecord
from tests.conftest import REPO
from tests.factories import make_alert


def records(settings: BusSettings) -> tuple[list[RawRecord], list[Alert], dict[int, str]]:
    """Good records of Serbia and North Macedonia, with bad ones among them: the raw records,
    the alerts that must open (in order) and the stage each bad offset fails at."""
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    signers = {cc: Signer.load(settings.keys_dir, cc) for cc in ("rs", "mk")}
    rs_topic = settings.topics.ingress("rs", "irregular-crossing")
    out: list[RawRecord] = []
    good: list[Alert] = []
    bad: dict[int, str] = {}

    def add(alert: Alert, *, signer: str | None = None, value: bytes | None = None,
            topic: str = rs_topic) -> int:  # fmt: skip
        encoded = codec.encode(alert)
        signature = signers[signer or alert.origin].sign(encoded)
        headers = alert_headers(alert, signature, signer or alert.origin)
        offset = len(out)
        out.append((topic, 0, offset, None, encoded if value is None else value, headers))
        return offset

    for i in range(40):
        alert = make_alert("irregular-crossing", "rs", case_ref=f"C-{i}")
        if i % 10 == 3:  # changed after signing
            bad[add(alert, value=codec.encode(make_alert("irregular-crossing", "rs")))] = (
                Stage.VERIFY
            )
        elif i % 10 == 5:  # North Macedonia's alert on Serbia's topic, signed by North Macedonia
            bad[add(make_alert("irregular-crossing", "mk"), signer="mk")] = Stage.VERIFY
        elif i % 10 == 7:  # not Avro
            bad[add(alert, value=b"\xc3\x01garbage")] = Stage.DECODE
        else:
            add(alert)
            good.append(alert)
    return out, good, bad


@pytest.mark.parametrize("workers", [0, 2])
async def test_workers_accept_and_reject_exactly_what_the_fan_out_does_in_order(
    offline_settings: BusSettings, workers: int
) -> None:
    for cc in ("rs", "mk"):
        generate_keypair(offline_settings.keys_dir, cc)
    raw, good, bad = records(offline_settings)
    async with IngressOpener(offline_settings, workers=workers) as opener:
        opened = await opener.open(raw)
        again = await opener.open(raw[:7])  # a second batch, through the same processes
    assert opened.alerts == [IndexedAlert.of(a) for a in good]
    assert {r.offset: r.stage for r in opened.rejections} == bad
    assert all(r.error and r.error_class for r in opened.rejections)
    assert again.alerts == opened.alerts[: len(again.alerts)]
    assert [r.offset for r in again.rejections] == [o for o in sorted(bad) if o < 7]


def test_an_indexed_alert_keeps_tokens_and_nothing_personal() -> None:
    alert = make_alert("irregular-crossing", "rs")
    assert isinstance(alert, IrregularCrossing)
    people = [*alert.persons, *filter(None, [alert.suspected_facilitator])]
    indexed = IndexedAlert.of(alert)
    assert {row[0] for row in indexed.entries} == {p.identity_token for p in people} - {None}
    text = repr(indexed)
    for person in people:
        assert person.family_name not in text
        assert str(person.date_of_birth) not in text


_KILLED_SERVICE = """
import asyncio, sys
from pathlib import Path
from bus import BusSettings
from services.index.opening import IngressOpener

async def main() -> None:
    settings = BusSettings(keys_dir=Path(sys.argv[1]), schemas_dir=Path(sys.argv[2]))
    opener = IngressOpener(settings, workers=2)
    await opener.open([("ingress.rs.readmission", 0, i, None, b"x", []) for i in range(8)])
    print(*opener._pool._processes, flush=True)  # the worker processes' ids
    await asyncio.sleep(600)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_workers_leave_when_the_service_is_killed(
    offline_settings: BusSettings, tmp_path: Path
) -> None:
    script = tmp_path / "service.py"
    script.write_text(_KILLED_SERVICE)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(offline_settings.keys_dir),
         str(offline_settings.schemas_dir)],
        stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        workers = [int(pid) for pid in proc.stdout.readline().split()]
        assert len(workers) == 2
        assert all(_alive(pid) for pid in workers)
    finally:
        proc.kill()
        proc.wait(30)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "worker processes outlived the killed service"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A worker that exited but is not reaped yet (a zombie) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"
