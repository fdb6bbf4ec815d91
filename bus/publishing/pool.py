"""Worker processes that prepare alerts for one publisher.

    pool = PreparingPool(settings, origin="rs", workers=2, public_key=signer.public_key)
    await pool.start()                      # returns once every worker loaded that key
    async for ready in pool.prepare(alerts, prepare_here):
        ...                                 # each chunk's Ready records, in the alerts' order
    await pool.close()

Each worker is ``python -m bus.publishing.worker`` with pipes to this process (see there for
the frames), not a ``multiprocessing`` pool: that would re-import the caller's main module in
every worker, which a national system's script may not expect. Two threads per worker move the
frames, so a worker gets its next chunk and hands back its last while the event loop is busy
preparing this process's share (the pipes are also widened where Linux allows). A worker that
exits, or that does not answer, fails its pending chunks with ``WorkerLost`` and takes no more;
this process then prepares those chunks itself.

``prepare`` keeps each worker four chunks ahead and, whenever the next chunk in order is not back
yet, prepares the next unassigned chunk in this process, so the work spreads by itself over
the cores there are, whatever else runs on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from bus.errors import BusError, ConfigError
from bus.logs import get_logger
from bus.models import Alert
from bus.publishing import frames
from bus.publishing.ready import ChunkFailure, Ready
from bus.settings import BusSettings

ChunkResult = tuple[list[Ready], ChunkFailure | None]

#: Alerts per chunk: small enough that work spreads evenly and laying out starts early, large
#: enough that a frame's cost is small.
CHUNK = 250
#: Chunks a worker holds unanswered: enough that it never waits for the next while this process
#: is busy preparing its own share (its pipe threads then wait their turn for the interpreter).
AHEAD = 4

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
_F_SETPIPE_SZ = 1031  # Linux: widen a pipe (up to /proc/sys/fs/pipe-max-size, 1 MiB by default)
_PIPE_BYTES = 1 << 20


class WorkerLost(BusError):
    """A preparing worker exited or stopped answering; its chunks are prepared elsewhere."""


def _widen(pipe: IO[bytes] | None) -> None:
    if pipe is None or not sys.platform.startswith("linux"):
        return
    import fcntl

    with contextlib.suppress(OSError):  # above the system's limit: the default size still works
        fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)


class _Worker:
    """One worker process, its two pipe threads, and the chunks it owes an answer for."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Any, public_key: bytes) -> None:
        self.proc = proc
        self.log = log
        self.public_key = public_key  # the publisher's: the worker must sign with this one
        self.loop = asyncio.get_running_loop()
        self.closing = False
        self.lost: str | None = None
        self.pending: dict[int, asyncio.Future[ChunkResult | None]] = {}
        self.ready: asyncio.Future[int] = self.loop.create_future()
        self.outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        _widen(proc.stdin)
        _widen(proc.stdout)
        self.threads = [
            threading.Thread(target=self._write, name=f"bus-prepare-{proc.pid}-in", daemon=True),
            threading.Thread(target=self._read, name=f"bus-prepare-{proc.pid}-out", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _write(self) -> None:  # a thread: frames to the worker, in order
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (frame := self.outbox.get()) is not None:
                stdin.write(frame)
                stdin.flush()
        except (OSError, ValueError) as exc:  # the worker went away
            self._from_thread(self._lose, f"its input closed ({type(exc).__name__})")
        finally:
            with contextlib.suppress(OSError, ValueError):
                stdin.close()

    def _read(self) -> None:  # a thread: answers from the worker, handed to the event loop
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            if stdout.read(len(frames.MAGIC)) != frames.MAGIC:
                why = "it wrote something else than its frames first (a sitecustomize printing?)"
                self._from_thread(self._lose, why)
                return
            while (message := frames.read(stdout)) is not None:
                self._from_thread(self._deliver, message)
        except Exception as exc:  # a frame that does not unpickle: the worker is not ours
            self._from_thread(self._lose, f"it sent an unreadable frame ({type(exc).__name__})")
            return
        code = self.proc.wait()
        self._from_thread(self._lose, f"it exited with code {code}")

    def _from_thread(self, callback: Any, arg: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(callback, arg)

    def _deliver(self, message: Any) -> None:
        kind = message[0]
        if kind == "done":
            _, seq, ready, failure = message
            future = self.pending.pop(seq, None)
            if future is not None and not future.done():
                future.set_result(None if ready is None else (ready, failure))
        elif kind == "ready":
            _, pid, public_key = message
            if public_key != self.public_key:
                self._lose(
                    "it loaded another public key than the publisher's (the key file changed "
                    "in between?); restart the publisher"
                )
            elif not self.ready.done():
                self.ready.set_result(pid)
        elif kind == "fatal":
            self._lose(f"it could not start: {message[1]}")
        else:
            self._lose(f"it sent a frame of an unknown kind {kind!r}")

    def send(self, seq: int, frame: bytes) -> asyncio.Future[ChunkResult | None]:
        future: asyncio.Future[ChunkResult | None] = self.loop.create_future()
        if self.lost is not None:
            future.set_exception(self._error())
        else:
            self.pending[seq] = future
            self.outbox.put(frame)
        return future

    def _error(self) -> WorkerLost:
        return WorkerLost(f"Preparing worker pid {self.proc.pid}: {self.lost}")

    def _lose(self, why: str) -> None:
        if self.lost is None and not self.closing and self.ready.done():
            self.log.warning("publish_worker_lost", pid=self.proc.pid, reason=why)
        self.lost = self.lost or why
        if not self.ready.done():
            self.ready.set_exception(self._error())
            self.ready.exception()  # retrieved here: start() reports it
        for future in self.pending.values():
            if not future.done():
                future.set_exception(self._error())
        self.pending.clear()
        self.kill()

    def kill(self) -> None:
        self.outbox.put(None)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A fork and an exec, as asyncio's own subprocess starts them: not worth a thread, and a
    # thread could leave a process nobody tracks if the start is cancelled meanwhile.
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)


class PreparingPool:
    """``workers`` processes that validate, encode and sign chunks of alerts for ``origin``.

    ``public_key`` is the publisher's own: a worker that loads another key is not used.
    """

    def __init__(
        self, settings: BusSettings, *, origin: str, workers: int, public_key: bytes
    ) -> None:
        if workers < 1:
            raise ValueError("a preparing pool needs at least one worker")
        self._settings = settings
        self._origin = origin
        self._size = workers
        self._public_key = public_key
        self._workers: list[_Worker] = []
        self._seq = 0
        self._log = get_logger("publisher", origin=origin)

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers in use (a lost one is left out until replaced)."""
        return [w.proc.pid for w in self._workers if w.lost is None]

    def _command(self) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        command = [
            sys.executable, "-m", "bus.publishing.worker", self._origin,
            str(self._settings.keys_dir.resolve()), str(self._settings.schemas_dir.resolve()),
        ]  # fmt: skip
        return command, env

    async def _started(self, count: int) -> list[_Worker]:
        """``count`` new workers, each ready; raises ``ConfigError`` (none left running)."""
        command, env = self._command()
        timeout = self._settings.connect_timeout_ms / 1000
        workers: list[_Worker] = []
        try:
            for _ in range(count):
                workers.append(_Worker(_spawn(command, env), self._log, self._public_key))
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(w.ready for w in workers))
        except TimeoutError:
            _kill(workers)
            raise ConfigError(
                f"{count} preparing worker(s) of the publisher did not start within "
                f"{timeout:.0f} s (BUS_CONNECT_TIMEOUT_MS); set BUS_PUBLISH_WORKERS=0 to prepare "
                "alerts in the publishing process"
            ) from None
        except (WorkerLost, OSError) as exc:
            _kill(workers)
            raise ConfigError(f"A preparing worker could not start: {exc}") from exc
        except BaseException:  # cancelled: nothing may be left running
            _kill(workers)
            raise
        return workers

    async def start(self) -> None:
        """Start the workers and wait until each loaded the schemas and the signing key.

        Bounded by ``BUS_CONNECT_TIMEOUT_MS``. Raises ``ConfigError`` naming what a worker could
        not do (a key it cannot read, say), with no worker left running.
        """
        self._workers = await self._started(self._size)
        self._log.info("publish_workers_started", workers=self._size, pids=self.pids)

    async def _replace_lost(self) -> None:
        """Start a new worker for each one lost (logged; without it if that fails too)."""
        lost = [w for w in self._workers if w.lost is not None]
        if not lost:
            return
        try:
            new = await self._started(len(lost))
        except ConfigError as exc:
            self._log.warning("publish_workers_not_replaced", error=str(exc))
            return
        self._workers = [w for w in self._workers if w.lost is None] + new
        self._log.info("publish_workers_replaced", pids=[w.proc.pid for w in new])

    def submit(
        self, worker: _Worker, items: Sequence[Alert | Mapping[str, Any]]
    ) -> asyncio.Future[ChunkResult | None]:
        """Hand ``items`` to ``worker``; the future gives ``(ready, failure)``, or None when the
        worker could not read them (this process prepares them then)."""
        self._seq += 1
        try:
            frame = frames.chunk(self._seq, items)
        except Exception:  # something pickle refuses: this process prepares the chunk
            future: asyncio.Future[ChunkResult | None] = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future
        return worker.send(self._seq, frame)

    async def prepare(
        self,
        alerts: Sequence[Alert | Mapping[str, Any]],
        here: Callable[[Alert | Mapping[str, Any]], Ready],
    ) -> AsyncIterator[list[Ready]]:
        """Each chunk of ``alerts`` made ready, in order, by the workers or by ``here``.

        ``here`` prepares one alert in this process and raises what is wrong with it. The first
        alert that cannot be prepared raises its error once every chunk before it was given
        out, as if the alerts were prepared one by one. A worker lost, or silent for
        ``BUS_PUBLISH_TIMEOUT_MS`` from the time this call waits for its chunk, leaves its
        chunks to ``here``, and is replaced at the start of the next call.
        """
        await self._replace_lost()
        workers = [w for w in self._workers if w.lost is None]
        size = min(CHUNK, -(-len(alerts) // (len(workers) + 1)))
        chunks = [alerts[i : i + size] for i in range(0, len(alerts), size)]
        owner: dict[int, _Worker] = {}  # chunk -> the worker preparing it
        given: dict[int, asyncio.Future[ChunkResult | None]] = {}  # handed out, not laid out
        working: dict[int, list[asyncio.Future[ChunkResult | None]]] = {id(w): [] for w in workers}
        done_here: dict[int, list[Ready] | BaseException] = {}
        unassigned = 0  # chunks before this one are a worker's or done here
        wait_s = self._settings.publish_timeout_ms / 1000

        def hand_out() -> None:
            """Keep every worker ``AHEAD`` chunks from idle (a chunk answered is not work)."""
            nonlocal unassigned
            for worker in workers:
                busy = working[id(worker)] = [f for f in working[id(worker)] if not f.done()]
                while unassigned < len(chunks) and worker.lost is None and len(busy) < AHEAD:
                    owner[unassigned] = worker
                    given[unassigned] = future = self.submit(worker, chunks[unassigned])
                    busy.append(future)
                    unassigned += 1

        def here_all(chunk: Sequence[Alert | Mapping[str, Any]]) -> list[Ready] | BaseException:
            try:
                return [here(alert) for alert in chunk]
            except Exception as exc:  # raised in its turn, after the chunks before it
                return exc

        try:
            for turn in range(len(chunks)):
                hand_out()
                future = given.pop(turn, None)
                # Rather than wait for a worker, prepare the next chunk nobody has.
                while future is not None and not future.done() and unassigned < len(chunks):
                    done_here[unassigned] = here_all(chunks[unassigned])
                    unassigned += 1
                    await asyncio.sleep(0)  # the answers that came meanwhile land
                    hand_out()
                if turn in done_here:
                    outcome = done_here.pop(turn)
                elif future is not None:
                    chunk = chunks[turn]
                    outcome = await self._answer(owner[turn], future, wait_s, chunk, here_all)
                else:  # no worker could take it (all lost)
                    unassigned = max(unassigned, turn + 1)
                    outcome = here_all(chunks[turn])
                if isinstance(outcome, BaseException):
                    raise outcome
                yield outcome
        finally:
            for future in given.values():
                future.cancel()

    async def _answer(
        self,
        worker: _Worker,
        future: asyncio.Future[ChunkResult | None],
        wait_s: float,
        chunk: Sequence[Alert | Mapping[str, Any]],
        here_all: Callable[[Sequence[Alert | Mapping[str, Any]]], list[Ready] | BaseException],
    ) -> list[Ready] | BaseException:
        """What ``worker`` made of ``chunk``, or what this process does when it fails."""
        try:
            async with asyncio.timeout(wait_s):
                answer = await future
        except TimeoutError:
            worker._lose(f"no answer on a chunk within {wait_s:.0f} s")
        except WorkerLost:
            pass  # logged once by the worker; this process prepares the chunk
        else:
            if answer is not None:
                ready, failure = answer
                return failure.exception() if failure is not None else ready
        return here_all(chunk)

    async def close(self, grace_s: float = 5.0) -> None:
        """Close each worker's input and wait for it to end (killed after ``grace_s``)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.closing = True
            worker.outbox.put(None)  # the writer closes stdin: the worker's loop ends
        for worker in workers:
            try:
                await asyncio.wait_for(asyncio.to_thread(worker.proc.wait), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
                await asyncio.to_thread(worker.proc.wait)
            for thread in worker.threads:
                await asyncio.to_thread(thread.join, grace_s)
            if worker.proc.stdout is not None:
                worker.proc.stdout.close()
            worker.lost = worker.lost or "the pool closed"
            for future in worker.pending.values():
                if not future.done():
                    future.set_exception(WorkerLost("The preparing pool closed"))


def _kill(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.closing = True
        worker.kill()
