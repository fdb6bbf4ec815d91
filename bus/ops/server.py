"""One service's operator endpoint: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

    async with OpsServer(service.metrics, host="127.0.0.1", port=8490) as ops:
        print(ops.url)            # http://127.0.0.1:8490
        await service.run()

It runs on the service's own event loop, so an answer from ``/healthz`` also says the loop is
responsive: a loop blocked by the service would leave the request unanswered. ``/readyz``
answers 200 when the service is ready as it defines it (``ServiceMetrics.readiness``) and 503
otherwise, with the facts in JSON either way. A port already taken stops the service at start
with an error naming the setting, rather than leaving it running unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Generator
from typing import Any

import prometheus_client as prom
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bus.errors import BusError
from bus.logs import get_logger
from bus.ops.metrics import ServiceMetrics


def make_app(metrics: ServiceMetrics) -> FastAPI:
    """The three endpoints over ``metrics`` (a FastAPI app without docs)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    started = time.monotonic()

    @app.get("/metrics")
    async def scrape(request: Request) -> Response:
        await metrics.readiness()  # lag, ready and the other values read on demand
        encode, content_type = prom.exposition.choose_encoder(request.headers.get("accept", ""))
        return Response(encode(metrics.registry), media_type=content_type)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"service": metrics.service, "status": "ok", "pid": os.getpid(),
                "uptime_s": round(time.monotonic() - started, 3)}  # fmt: skip

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        readiness = await metrics.readiness()
        body = {"service": metrics.service, "ready": readiness.ready, **readiness.detail}
        return JSONResponse(body, status_code=200 if readiness.ready else 503)

    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The service owns SIGINT and SIGTERM; its endpoint stops with it (``__aexit__``).
        yield


class OpsServer:
    """Serves a service's metrics, health and readiness until the block ends."""

    def __init__(
        self,
        metrics: ServiceMetrics,
        *,
        host: str,
        port: int,
        setting: str = "the port",
        spare: int = 0,
    ) -> None:
        """``port`` 0 picks a free one (``self.port`` says which); ``setting`` names where
        the port came from, for the error when it is taken. With ``spare`` > 0 a taken port
        is not an error while one of the next ``spare`` ports is free (the built-in default:
        several instances of a service on one machine each take the next free port)."""
        self.metrics = metrics
        self.host = host
        self.port = port
        self._setting = setting
        self._spare = spare if port else 0
        self._server = _Server(uvicorn.Config(
            make_app(metrics), log_config=None, access_log=False, lifespan="off",
            timeout_graceful_shutdown=1,
        ))  # fmt: skip
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> OpsServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for port in range(self.port, self.port + self._spare + 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, port))
                break
            except OSError as exc:
                sock.close()
                if port < self.port + self._spare:
                    continue
                tried = f"{self.port}-{port}" if self._spare else str(port)
                raise BusError(
                    f"The {self.metrics.service} cannot serve its metrics on "
                    f"{self.host}:{tried}: {exc.strerror or exc}. Another process may hold "
                    f"the port: set {self._setting} to a free one, or 0 to serve none"
                ) from exc
        self.port = int(sock.getsockname()[1])
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise BusError(f"The {self.metrics.service}'s metrics endpoint did not start")
            await asyncio.sleep(0.01)
        # Bound now, not at import: the command configures logging after importing this.
        get_logger("ops").info("ops_endpoint_listening", service=self.metrics.service, url=self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self._task, 5)


#: How many ports after a service's built-in default port its further instances on one
#: machine may take (a port set explicitly is used as given, or the service stops).
SPARE_PORTS = 9


def ops_endpoint(
    metrics: ServiceMetrics, *, host: str, port: int, setting: str, default: bool = False
) -> contextlib.AbstractAsyncContextManager[OpsServer | None]:
    """``OpsServer`` on ``port``, or nothing when the port is 0 (the endpoint turned off).

    ``default``: the port is the built-in default, not one the operator chose; when it is
    taken (another instance on this machine) the next free of ``SPARE_PORTS`` ports serves."""
    if not port:
        return contextlib.nullcontext()
    spare = SPARE_PORTS if default else 0
    return OpsServer(metrics, host=host, port=port, setting=setting, spare=spare)
