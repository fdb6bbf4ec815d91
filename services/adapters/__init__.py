"""National adapters: each country's own files and HTTP calls in, typed signed alerts out.

    mapping = load_mapping("rs")                      # services/adapters/countries/rs.py
    identity = IdentityHasher.from_settings(AdapterSettings())
    async with Adapter(BusSettings(), mapping, identity=identity) as adapter:
        async with DropFolder(adapter, Path("/srv/drop/rs")) as folder:
            await folder.scan_once()                   # each record published once, or set aside

Adding a country is one module in ``countries/`` and its sample feed in ``examples/feeds/<cc>/``;
see ``mapping`` for the contract. ``bus adapter run <cc> --watch DIR | --http HOST:PORT`` runs one.
"""

from services.adapters.adapter import Adapter
from services.adapters.dropfolder import DropFolder, FileOutcome
from services.adapters.errors import AdapterError, BatchRejected, FeedRejected, RecordRejected
from services.adapters.feeds import CsvFeed, FeedRecord, JsonFeed, JsonLinesFeed, XmlFeed
from services.adapters.fields import Conventions, NativeRecord
from services.adapters.http import create_app
from services.adapters.identity import IdentityHasher
from services.adapters.mapping import (
    CountryMapping,
    MappingContext,
    RecordRef,
    alert_id_for,
    available_countries,
    load_mapping,
)
from services.adapters.settings import AdapterSettings

__all__ = [
    "Adapter",
    "AdapterError",
    "AdapterSettings",
    "BatchRejected",
    "Conventions",
    "CountryMapping",
    "CsvFeed",
    "DropFolder",
    "FeedRecord",
    "FeedRejected",
    "FileOutcome",
    "IdentityHasher",
    "JsonFeed",
    "JsonLinesFeed",
    "MappingContext",
    "NativeRecord",
    "RecordRef",
    "RecordRejected",
    "XmlFeed",
    "alert_id_for",
    "available_countries",
    "create_app",
    "load_mapping",
]
