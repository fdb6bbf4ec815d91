"""Opening ingress for the index: decode, verify and extract, spread over worker processes.

    async with IngressOpener(settings, workers=2) as opener:
        opened = await opener.open(records)     # RawRecord tuples in, in consumption order
        opened.alerts                           # IndexedAlert of each record that verified
        opened.rejections                       # Rejection of each that did not, with why

Every record goes through ``bus.envelope.open_record``, the fan-out's own check (Avro schema,
signature by the origin's key, model constraints), so the index accepts exactly what the fan-out
accepts. That costs about a millisecond of CPU for an alert naming 50 persons, far more than
reading it from Kafka, so the work is spread over processes: raw bytes go in, the few rows the
index keeps (``IndexedAlert``: tuples and strings) come out, in the order given. The service
keeps the single SQLite writer, so each batch still commits with its offsets in one transaction.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from bus.codec import AlertCodec
from bus.envelope import RecordError, open_record
from bus.keys import KeyRing
from bus.schemas import SchemaRegistry
from bus.settings import BusSettings
from bus.topics import TopicNames
from services.index.extract import IndexedAlert

#: topic, partition, offset, key, value, headers: a consumer record without what the index
#: does not read, so that it pickles cheaply.
RawRecord = tuple[str, int, int, bytes | None, bytes | None, Sequence[tuple[str, bytes]]]
#: Pieces of work each batch is cut into, per worker process: more than one, so that a worker
#: slowed down by other work on the machine does not hold the whole batch up.
PIECES_PER_WORKER = 2


class Rejection(NamedTuple):
    """A record that did not open, and why (the fan-out dead-letters it; the index skips it)."""

    topic: str
    partition: int
    offset: int
    stage: str
    error_class: str
    error: str


@dataclass
class Opened:
    """What a batch of records opened to, in the order given."""

    alerts: list[IndexedAlert] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    #: CPU time spent opening them, in seconds, in whichever process did it.
    cpu_s: float = 0.0

    def extend(self, other: Opened) -> None:
        self.alerts += other.alerts
        self.rejections += other.rejections
        self.cpu_s += other.cpu_s


class _Opener:
    """The schemas, keys and topic names one process opens records with."""

    def __init__(self, schemas_dir: Path, keys_dir: Path, topic_prefix: str) -> None:
        self.codec = AlertCodec(SchemaRegistry.load(schemas_dir))
        self.keyring = KeyRing(keys_dir)
        self.names = TopicNames(topic_prefix)

    def open(self, records: Sequence[RawRecord]) -> Opened:
        started = time.process_time()
        out = Opened()
        for topic, partition, offset, key, value, headers in records:
            try:
                received = open_record(
                    self.codec, self.keyring, names=self.names, topic=topic,
                    partition=partition, offset=offset, key=key, value=value, headers=headers,
                )  # fmt: skip
            except RecordError as exc:
                error = exc.error
                out.rejections.append(Rejection(topic, partition, offset, exc.stage,
                                                type(error).__name__, str(error)))  # fmt: skip
                continue
            out.alerts.append(IndexedAlert.of(received.alert))
        out.cpu_s = time.process_time() - started
        return out


#: The opener of a worker process, made once when the process starts.
_worker: _Opener | None = None


def _start_worker(schemas_dir: Path, keys_dir: Path, topic_prefix: str) -> None:
    global _worker
    _worker = _Opener(schemas_dir, keys_dir, topic_prefix)
    # A service killed outright (kill -9) cannot stop its workers: each one leaves as soon as
    # the service is gone, rather than wait forever for work.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _open_in_worker(records: Sequence[RawRecord]) -> Opened:
    if _worker is None:  # pragma: no cover - the pool's initializer always runs first
        raise RuntimeError("An index worker process was used before it was started")
    return _worker.open(records)


class IngressOpener:
    """Opens batches of ingress records, in ``workers`` processes (none: in this one).

    The processes start with the first batch and stop when the opener closes. They are forked
    from a clean server process (``forkserver``), never from the service itself, whose Kafka
    client and SQLite threads must not be copied mid-flight.
    """

    def __init__(self, settings: BusSettings, *, workers: int) -> None:
        self._args = (settings.schemas_dir, settings.keys_dir, settings.topic_prefix)
        self._workers = workers
        self._local: _Opener | None = None
        self._pool: ProcessPoolExecutor | None = None

    async def __aenter__(self) -> IngressOpener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def open(self, records: Sequence[RawRecord]) -> Opened:
        """Decode, verify and extract ``records``; the result keeps their order."""
        if self._workers == 0:
            if self._local is None:
                self._local = _Opener(*self._args)
            return self._local.open(records)
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            self._pool = ProcessPoolExecutor(
                self._workers, mp_context=context, initializer=_start_worker, initargs=self._args
            )
        loop = asyncio.get_running_loop()
        size = -(-len(records) // (self._workers * PIECES_PER_WORKER))
        pieces = await asyncio.gather(*(
            loop.run_in_executor(self._pool, _open_in_worker, records[i : i + size])
            for i in range(0, len(records), size)
        ))  # fmt: skip
        out = Opened()
        for piece in pieces:
            out.extend(piece)
        return out
