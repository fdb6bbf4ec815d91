"""``POST /v1/lookup``: the lookup over HTTP, authenticated per requester; OpenAPI at ``/docs``.

    curl -H "Authorization: Bearer $TOKEN" -d '{"tokens": ["it1.…"]}' http://127.0.0.1:8475/v1/lookup

Each requester has its own bearer token (``BUS_LOOKUP_HTTP_TOKENS``); the token decides who is
asking, so nobody can ask as another partner. The answer is the same as over Kafka and on the
command line: one result per token, hit or no-hit, and on a hit which owner holds which alert.
"""

# No "from __future__ import annotations": FastAPI reads the local dependency annotations.

import hmac
import uuid
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, SecretStr

from bus.errors import BusError
from bus.logs import get_logger
from bus.models import TokenResult
from bus.models._common import Record
from services.index.lookup import LookupRefused, TooManyTokens
from services.index.service import IndexService

_log = get_logger("index.http")


class LookupBody(BaseModel):
    """Tokens to look up, 1 to 1,000, as the adapters make them ('it1.' + 32 hex digits)."""

    tokens: list[Any] = Field(min_length=1, description="identity tokens")


class LookupOut(Record):
    """The answer over HTTP: the lookup's id, who asked, and the results as over Kafka."""

    lookup_id: uuid.UUID
    requester: str
    results: list[TokenResult]


def make_app(service: IndexService, tokens: dict[str, SecretStr]) -> FastAPI:
    app = FastAPI(
        title="Balkan Alert Bus joint index", version="1",
        description="Hit/no-hit lookups on identity tokens, as agreements allow.",
    )  # fmt: skip
    bearer = HTTPBearer(auto_error=False)

    def requester(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        if credentials is not None:
            given = credentials.credentials.encode()
            for partner, secret in tokens.items():
                if hmac.compare_digest(given, secret.get_secret_value().encode()):
                    return partner
        raise HTTPException(
            401, "Missing or unknown bearer token: each requester has its own "
            "(BUS_LOOKUP_HTTP_TOKENS)", {"WWW-Authenticate": "Bearer"},
        )  # fmt: skip

    @app.exception_handler(LookupRefused)
    async def refused(request: Request, exc: LookupRefused) -> JSONResponse:
        status = 413 if isinstance(exc, TooManyTokens) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(BusError)
    async def unavailable(request: Request, exc: BusError) -> JSONResponse:
        # Kafka did not take the hit notices and audit record: no answer without them.
        _log.error("lookup_not_committed", error_class=type(exc).__name__, error=str(exc))
        return JSONResponse({"detail": f"The lookup could not be recorded, so it is not "
                                       f"answered; try again: {exc}"}, status_code=503)  # fmt: skip

    @app.post("/v1/lookup", response_model=LookupOut)
    async def lookup(body: LookupBody, who: Annotated[str, Depends(requester)]) -> Response:
        """Hit or no-hit per token; on a hit, which owner holds which alert and whom to ask."""
        answer = await service.lookup(who, body.tokens, channel="http")
        assert answer.request_id is not None  # an answer made here always has its lookup's id
        # The answer is made of checked models: written to JSON once, in pydantic-core, rather
        # than dumped to dicts, validated against ``LookupOut`` and dumped again by FastAPI.
        out = LookupOut.model_construct(lookup_id=answer.request_id, requester=who,
                                        results=answer.results)  # fmt: skip
        return Response(out.model_dump_json(), media_type="application/json")

    return app


async def serve(service: IndexService, host: str, port: int, tokens: dict[str, SecretStr]) -> None:
    """Serve the API until cancelled."""
    import uvicorn

    config = uvicorn.Config(make_app(service, tokens), host=host, port=port, log_level="warning",
                            lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    _log.info("lookup_http_listening", host=host, port=port, requesters=sorted(tokens))
    await server.serve()
