"""Helpers for the index tests: sample feeds into ingress, an index service running in a task."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

from bus import BusSettings
from bus.agreements import Agreements, load_agreements
from bus.schemas import SchemaRegistry
from services.adapters.dropfolder import DropFolder
from services.adapters.identity import IdentityHasher
from services.index.service import IndexService
from services.index.settings import IndexSettings
from tests.conftest import REPO
from tests.integration.conftest import create_topics
from tests.integration.test_adapters import adapter, adapter_topics
from tests.unit.test_adapters_countries import sample_feed

AGREEMENTS = REPO / "examples" / "agreements.yaml"
#: Marko Petrović, in the Serbian (Cyrillic) and Greek feeds, with the development key.
PETROVIC = IdentityHasher.development().token(
    "Петровић", "Марко", date(1984, 3, 15), "rs", language="sr"
)


def example_agreements(settings: BusSettings) -> Agreements:
    return load_agreements(AGREEMENTS, schemas=SchemaRegistry.load(settings.schemas_dir))


async def feed_samples(settings: BusSettings, tmp_path: Path, *countries: str) -> list[str]:
    """Each country's sample feed through its adapter; returns the ingress topics."""
    topics: list[str] = []
    for cc in countries:
        topics += await adapter_topics(settings, cc)
        folder_path = tmp_path / f"drop-{cc}"
        folder_path.mkdir()
        shutil.copy(sample_feed(cc), folder_path)
        async with adapter(settings, cc) as a, DropFolder(a, folder_path) as folder:
            await folder.scan_once()
    return topics


async def index_topics(settings: BusSettings, agreements: Agreements) -> None:
    await create_topics(settings, *(settings.topics.inbox(p) for p in agreements.partners))


@asynccontextmanager
async def running_index(
    settings: BusSettings, data_dir: Path, **kw: Any
) -> AsyncIterator[IndexService]:
    """An index service that has folded everything in ingress now, answering lookups."""
    service = IndexService(settings, IndexSettings(data_dir=data_dir), **kw)
    await service.catch_up()
    task = asyncio.create_task(service.run())
    try:
        await service.wait_ready()
        while service._responder is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        yield service
    finally:
        service.stop()
        await task
