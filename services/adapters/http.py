"""HTTP for national systems that push: ``POST /v1/{cc}/alerts`` with native JSON records.

    curl -X POST http://127.0.0.1:8080/v1/rs/alerts \\
         -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
         -d '{"ид_записа": "УГП-2014-0117", "верзија": 1, …}'          # one record, or [ … ]

- 202 ``{"alert_ids": [...], "results": [...]}`` once Kafka acknowledged every alert;
- 422 ``{"detail": [{"loc": ["body", 3, "датум_рођења"], "msg": …}]}`` naming each rejected
  record's field and reason (also a record nested deeper than 32 levels, or a number no alert
  field holds); nothing of the batch was published;
- 401 without a valid ``Authorization: Bearer`` token of that country (``BUS_ADAPTER_HTTP_TOKENS``);
- 413 for a body over ``BUS_ADAPTER_MAX_REQUEST_BYTES``; 503 when Kafka cannot be reached.

Sending a batch again publishes the same alert ids (they are derived from the national record
id and version), which partners receive once. OpenAPI documentation: ``/docs``, ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr

from bus.errors import KafkaError
from services.adapters.adapter import Adapter
from services.adapters.errors import BatchRejected, FeedRejected
from services.adapters.nesting import JsonTooDeep, load_json


class PublishedAlert(BaseModel):
    alert_id: str
    topic: str
    partition: int
    offset: int


class Accepted(BaseModel):
    """The alerts Kafka acknowledged, in the order of the records posted."""

    alert_ids: list[str]
    results: list[PublishedAlert]


class Problem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Rejected(BaseModel):
    """Why the request was refused; nothing of it was published."""

    detail: list[Problem]


def _problem(status: int, loc: list[str | int], msg: str, kind: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": loc, "msg": msg, "type": kind}]}, status_code=status)


def _request_body_doc(adapters: Mapping[str, Adapter]) -> dict[str, Any]:
    return {
        "required": True,
        "description": (
            "One native record (a JSON object with the country's own field names, as in "
            "examples/feeds/<cc>/), or an array of them. Countries served: "
            + ", ".join(sorted(adapters))
        ),
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "object", "additionalProperties": True},
                        {
                            "type": "array",
                            "items": {"type": "object", "additionalProperties": True},
                        },
                    ]
                }
            }
        },
    }


def create_app(adapters: Mapping[str, Adapter], tokens: Mapping[str, SecretStr]) -> FastAPI:
    """The HTTP app for running ``adapters`` (by country), each guarded by its token.

    A country without a token cannot be posted to (401): there is no open mode.
    """
    app = FastAPI(
        title="Balkan Alert Bus: national adapters",
        version="1",
        description=__doc__,
    )
    limits = {cc: a.config for cc, a in adapters.items()}

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, list[str]]:
        return {"countries": sorted(adapters)}

    @app.post(
        "/v1/{cc}/alerts",
        status_code=202,
        summary="Publish native records as alerts",
        response_model=Accepted,
        responses={
            401: {"description": "Missing or wrong bearer token", "model": Rejected},
            404: {"description": "No adapter for that country here", "model": Rejected},
            413: {"description": "Body or batch too large", "model": Rejected},
            422: {"description": "A record was rejected; nothing published", "model": Rejected},
            503: {"description": "Kafka did not acknowledge; send again", "model": Rejected},
        },
        openapi_extra={"requestBody": _request_body_doc(adapters)},
    )
    async def post_alerts(cc: str, request: Request) -> Any:
        adapter = adapters.get(cc)
        if adapter is None:
            return _problem(404, ["path", "cc"], f"no adapter for {cc!r} here", "not_found")
        if not _authorised(request.headers.get("authorization"), tokens.get(cc)):
            response = _problem(
                401, ["header", "Authorization"],
                f"expected 'Authorization: Bearer <token of {cc}>'", "unauthorised",
            )  # fmt: skip
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        config = limits[cc]
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_request_bytes:
                return _problem(
                    413, ["body"], f"the body is over {config.max_request_bytes} bytes", "too_large"
                )
        try:
            # Parsed in a thread: 4 MiB of JSON is CPU work the event loop should not wait on.
            payload = await asyncio.to_thread(_parse_body, bytes(body))
        except UnicodeDecodeError as exc:
            return _problem(422, ["body"], f"the body is not UTF-8: {exc.reason}", "encoding")
        except JsonTooDeep as exc:
            return _problem(422, ["body"], str(exc), "too_deep")
        except FeedRejected as exc:
            return _problem(422, ["body"], f"the body is {exc.reason}" + (
                f" ({exc.where})" if exc.where else ""), "json_invalid")  # fmt: skip
        items = payload if isinstance(payload, list) else [payload]
        if not items:
            return _problem(422, ["body"], "expected at least one record", "empty")
        if len(items) > config.max_records_per_request:
            return _problem(
                413, ["body"],
                f"{len(items)} records; at most {config.max_records_per_request} per request",
                "too_large",
            )  # fmt: skip
        try:
            results = await adapter.submit(items, source="body")
        except BatchRejected as exc:
            detail = [
                {
                    "loc": ["body", index, *([field] if field else [])],
                    "msg": reason,
                    "type": "record_rejected",
                }
                for index, field, reason in exc.problems
            ]
            return JSONResponse({"detail": detail}, status_code=422)
        except KafkaError as exc:
            response = _problem(503, [], f"Kafka did not acknowledge: {exc}", "unavailable")
            response.headers["Retry-After"] = "5"
            return response
        return Accepted(
            alert_ids=[str(r.alert_id) for r in results],
            results=[
                PublishedAlert(
                    alert_id=str(r.alert_id), topic=r.topic, partition=r.partition, offset=r.offset
                )
                for r in results
            ],
        )

    return app


def _parse_body(body: bytes) -> Any:
    """The JSON body, parsed as the adapters parse a JSON file (``load_json``)."""
    return load_json(body.decode("utf-8"), "body")


def _authorised(header: str | None, token: SecretStr | None) -> bool:
    if token is None or not token.get_secret_value() or not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant-time comparison: the time taken says nothing about how much of the token matched.
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())
