"""The index service's supervision, without a broker: a broker failure starts a new session,
anything else stops the service with its error."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus import BusSettings
from bus.errors import KafkaError
from services.index.service import IndexService
from services.index.settings import IndexSettings
from tests.conftest import REPO


def service(offline_settings: BusSettings, tmp_path: Path) -> IndexService:
    settings = offline_settings.model_copy(
        update={"agreements": REPO / "examples" / "agreements.yaml"}
    )
    return IndexService(settings, IndexSettings(data_dir=tmp_path))


async def test_a_broker_failure_starts_a_new_session(
    offline_settings: BusSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = service(offline_settings, tmp_path)
    sessions: list[int] = []

    async def session(answer_lookups: bool) -> None:
        sessions.append(1)
        if len(sessions) == 1:
            raise KafkaError("Reading ingress: no answer from Kafka within 10000 ms")
        index.stop()

    monkeypatch.setattr(index, "_session", session)
    await index.run()
    assert len(sessions) == 2
    assert index.restarts == 1


async def test_a_bug_stops_the_service_with_its_error(
    offline_settings: BusSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = service(offline_settings, tmp_path)

    async def session(answer_lookups: bool) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(index, "_session", session)
    with pytest.raises(ValueError, match="a bug"):
        await index.run()
