"""Worker processes that prepare alerts for one publisher.

    pool = PreparingPool(settings, origin="rs", workers=2)
    await pool.start()                      # returns once every worker loaded its key
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


class _NotSent(Exception):
    """A chunk could not be put in a frame (it holds something pickle refuses)."""


def _widen(pipe: IO[bytes] | None) -> None:
    if pipe is None or not sys.platform.startswith("linux"):
        return
    import fcntl

    with contextlib.suppress(OSError):  # above the system's limit: the default size still works
        fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)


class _Worker:
    """One worker process, its two pipe threads, and the chunks it owes an answer for."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Any) -> None:
        self.proc = proc
        self.log = log
        self.loop = asyncio.get_running_loop()
        self.closing = False
        self.lost: str | None = None
        self.pending: dict[int, asyncio.Future[ChunkResult]] = {}
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
            while (message := frames.read(stdout)) is not None:
                self._from_thread(self._deliver, message)
        except Exception as exc:  # a frame that does not unpickle: the worker is not ours
            self.proc.kill()
            self._from_thread(self._lose, f"it sent an unreadable frame ({type(exc).__name__})")
            return
        code = self.proc.wait()
        self._from_thread(self._lose, f"it exited with code {code}")

    def _from_thread(self, callback: Any, arg: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(callback, arg)

    def _deliver(self, message: Any) -> None:
        if not self.ready.done():
            kind, detail = message
            if kind == "ready":
                self.ready.set_result(detail)
            else:
                self._lose(f"it could not start: {detail}")
            return
        seq, ready, failure = message
        future = self.pending.pop(seq, None)
        if future is not None and not future.done():
            future.set_result((ready, failure))

    def send(self, seq: int, frame: bytes) -> asyncio.Future[ChunkResult]:
        future: asyncio.Future[ChunkResult] = self.loop.create_future()
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
        self.outbox.put(None)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


class PreparingPool:
    """``workers`` processes that validate, encode and sign chunks of alerts for ``origin``."""

    def __init__(self, settings: BusSettings, *, origin: str, workers: int) -> None:
        if workers < 1:
            raise ValueError("a preparing pool needs at least one worker")
        self._settings = settings
        self._origin = origin
        self._size = workers
        self._workers: list[_Worker] = []
        self._seq = 0
        self._log = get_logger("publisher", origin=origin)

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    @property
    def size(self) -> int:
        return self._size

    async def start(self) -> None:
        """Start the workers and wait until each loaded the schemas and the signing key.

        Bounded by ``BUS_CONNECT_TIMEOUT_MS``. Raises ``ConfigError`` naming what a worker could
        not do (a key it cannot read, say), after stopping the others.
        """
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        command = [
            sys.executable, "-m", "bus.publishing.worker", self._origin,
            str(self._settings.keys_dir.resolve()), str(self._settings.schemas_dir.resolve()),
        ]  # fmt: skip
        timeout = self._settings.connect_timeout_ms / 1000
        try:
            for _ in range(self._size):
                proc = await asyncio.to_thread(
                    subprocess.Popen,
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                )
                self._workers.append(_Worker(proc, self._log))
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(w.ready for w in self._workers))
        except TimeoutError:
            await self.close()
            raise ConfigError(
                f"The publisher's {self._size} preparing worker(s) did not start within "
                f"{timeout:.0f} s (BUS_CONNECT_TIMEOUT_MS); set BUS_PUBLISH_WORKERS=0 to prepare "
                "alerts in the publishing process"
            ) from None
        except (WorkerLost, OSError) as exc:
            await self.close()
            raise ConfigError(f"A preparing worker could not start: {exc}") from exc
        self._log.info("publish_workers_started", workers=self._size, pids=self.pids)

    def usable(self, index: int) -> bool:
        return index < len(self._workers) and self._workers[index].lost is None

    def submit(
        self, index: int, items: Sequence[Alert | Mapping[str, Any]]
    ) -> asyncio.Future[ChunkResult]:
        """Hand ``items`` to worker ``index``; the future gives ``(ready, failure)``."""
        self._seq += 1
        try:
            frame = frames.encode((self._seq, items))
        except Exception as exc:  # something pickle refuses: this process prepares the chunk
            future: asyncio.Future[ChunkResult] = asyncio.get_running_loop().create_future()
            future.set_exception(_NotSent(f"{type(exc).__name__}: {exc}"))
            return future
        return self._workers[index].send(self._seq, frame)

    async def prepare(
        self,
        alerts: Sequence[Alert | Mapping[str, Any]],
        here: Callable[[Alert | Mapping[str, Any]], Ready],
    ) -> AsyncIterator[list[Ready]]:
        """Each chunk of ``alerts`` made ready, in order, by the workers or by ``here``.

        ``here`` prepares one alert in this process and raises what is wrong with it. The first
        alert that cannot be prepared raises its error once every chunk before it was given
        out, as if the alerts were prepared one by one. A worker lost, or silent for
        ``BUS_PUBLISH_TIMEOUT_MS`` on a chunk, leaves its chunks to ``here``.
        """
        size = min(CHUNK, -(-len(alerts) // (len(self._workers) + 1)))
        chunks = [alerts[i : i + size] for i in range(0, len(alerts), size)]
        owner: dict[int, int] = {}  # chunk -> the worker preparing it
        given: dict[int, asyncio.Future[ChunkResult]] = {}
        done_here: dict[int, list[Ready] | BaseException] = {}
        unassigned = 0
        wait_s = self._settings.publish_timeout_ms / 1000

        def hand_out() -> None:
            nonlocal unassigned
            for index, worker in enumerate(self._workers):
                while (
                    unassigned < len(chunks)
                    and worker.lost is None
                    and sum(1 for c, w in owner.items() if w == index and c in given) < AHEAD
                ):
                    owner[unassigned] = index
                    given[unassigned] = self.submit(index, chunks[unassigned])
                    unassigned += 1

        def here_all(chunk: Sequence[Alert | Mapping[str, Any]]) -> list[Ready] | BaseException:
            try:
                return [here(alert) for alert in chunk]
            except Exception as exc:  # raised in its turn, after the chunks before it
                return exc

        try:
            for turn, chunk in enumerate(chunks):
                hand_out()
                future = given.get(turn)
                while future is not None and not future.done() and unassigned < len(chunks):
                    done_here[unassigned] = here_all(chunks[unassigned])  # instead of waiting
                    unassigned += 1
                    await asyncio.sleep(0)  # the answers that came meanwhile land
                if turn in done_here:
                    outcome = done_here.pop(turn)
                elif future is None:
                    outcome = here_all(chunk)
                else:
                    del given[turn]
                    outcome = await self._answer(owner[turn], future, wait_s, chunk, here_all)
                if isinstance(outcome, BaseException):
                    raise outcome
                yield outcome
        finally:
            for future in given.values():
                future.cancel()

    async def _answer(
        self,
        index: int,
        future: asyncio.Future[ChunkResult],
        wait_s: float,
        chunk: Sequence[Alert | Mapping[str, Any]],
        here_all: Callable[[Sequence[Alert | Mapping[str, Any]]], list[Ready] | BaseException],
    ) -> list[Ready] | BaseException:
        """What worker ``index`` made of ``chunk``, or what this process does when it fails."""
        try:
            async with asyncio.timeout(wait_s):
                ready, failure = await future
        except TimeoutError:
            self.give_up(index, f"no answer on a chunk within {wait_s:.0f} s")
        except (WorkerLost, _NotSent):
            pass  # a lost worker was logged once; this process prepares the chunk
        else:
            return failure.exception() if failure is not None else ready
        return here_all(chunk)

    def give_up(self, index: int, why: str) -> None:
        """Stop using worker ``index`` (it did not answer in time): kill it, fail its chunks."""
        self._workers[index]._lose(why)

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
