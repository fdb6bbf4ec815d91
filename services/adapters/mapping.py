"""The contract of a country mapping, and what every mapping shares: ids, headers, persons.

Adding a country is one module ``services/adapters/countries/<cc>.py`` that defines a
``CountryMapping`` subclass and ``MAPPING = ThatClass()``, plus its sample feed in
``examples/feeds/<cc>/``:

    class SerbiaMapping(CountryMapping):
        cc = "rs"
        conventions = Conventions(language="sr", timezone=ZoneInfo("Europe/Belgrade"),
                                  date_formats=("%d.%m.%Y.",))
        feed = CsvFeed(delimiter=",")
        issuing_agency = "Ministry of Interior of Serbia"

        def to_alert(self, rec: NativeRecord, ctx: MappingContext) -> Alert:
            header = ctx.header(RecordRef(rec.text("ид_записа"), rec.integer("верзија")), ...)
            return IrregularCrossing(header=header, ...)

Alert ids are UUIDv5 over (origin, national record id, record version): the same record always
becomes the same alert, so a file read twice publishes the same ids and partners, whose fan-out
drops repeated ids, get nothing twice. A higher version is an UPDATE that references the
previous version's alert; a withdrawn record is a CANCEL.
"""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import ClassVar

import pydantic

from bus.models import (
    Alert,
    AlertHeader,
    AlertStatus,
    HandlingCode,
    MessageType,
    OriginalScript,
    PersonRef,
    Sex,
    SourceReliability,
    Tlp,
    TravelDocument,
    WarningMarker,
)
from services.adapters.errors import AdapterError, RecordRejected, unexpected
from services.adapters.feeds import FeedFormat, FeedRecord
from services.adapters.fields import Conventions, NativeRecord
from services.adapters.identity import IdentityHasher
from services.adapters.names import detect_script, normalise_spaces, to_latin

#: Namespace of adapter alert ids (a UUIDv5 itself, so that anyone can recompute it).
ALERT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:balkan-alert-bus:adapter-record")


def alert_id_for(origin: str, national_id: str, version: int) -> uuid.UUID:
    """The alert id of version ``version`` of national record ``national_id`` of ``origin``."""
    return uuid.uuid5(ALERT_ID_NAMESPACE, f"{origin}\x1f{national_id}\x1f{version}")


@dataclass(frozen=True)
class RecordRef:
    """Which national record this is: its id in the national system, version, and withdrawal."""

    national_id: str
    version: int = 1
    withdrawn: bool = False


class MappingContext:
    """What a mapping needs besides the record: the origin and the identity hasher."""

    def __init__(self, origin: str, language: str, identity: IdentityHasher) -> None:
        self.origin = origin
        self.language = language
        self._identity = identity

    def header(
        self,
        ref: RecordRef,
        *,
        issuing_agency: str,
        issued_at: datetime,
        occurred_at: datetime,
        tlp: Tlp,
        source_reliability: SourceReliability,
        information_accuracy: int,
        case_ref: str | None = None,
        handling_codes: Sequence[HandlingCode] = (),
        expires_at: datetime | None = None,
        explicit_recipients: Sequence[str] = (),
        status: AlertStatus = AlertStatus.ACTUAL,
    ) -> AlertHeader:
        """The header of the alert for ``ref``: id, message type and references follow from it."""
        if ref.version < 1:
            raise RecordRejected(f"expected a record version of at least 1, got {ref.version}")
        previous = alert_id_for(self.origin, ref.national_id, ref.version - 1)
        if ref.withdrawn:
            if ref.version < 2:
                raise RecordRejected(
                    "a withdrawn record must have a version of at least 2 (the withdrawal is "
                    "a new version of the record it withdraws)"
                )
            msg_type, references = MessageType.CANCEL, [previous]
        elif ref.version > 1:
            msg_type, references = MessageType.UPDATE, [previous]
        else:
            msg_type, references = MessageType.ALERT, []
        return AlertHeader(
            alert_id=alert_id_for(self.origin, ref.national_id, ref.version),
            origin=self.origin,
            issuing_agency=issuing_agency,
            issued_at=issued_at,
            occurred_at=occurred_at,
            status=status,
            msg_type=msg_type,
            references=references,
            case_ref=case_ref,
            tlp=tlp,
            handling_codes=list(handling_codes),
            source_reliability=source_reliability,
            information_accuracy=information_accuracy,
            expires_at=expires_at,
            explicit_recipients=list(explicit_recipients),
        )

    def person(
        self,
        *,
        family_name: str | None,
        given_names: str | None,
        date_of_birth: date | None = None,
        nationality: str | None = None,
        sex: Sex | None = None,
        travel_document: TravelDocument | None = None,
        warning_markers: Sequence[WarningMarker] = (),
        field: str = "",
    ) -> PersonRef:
        """A person from names in any script: kept as written, in Latin, and as a token.

        ``field`` names the record's person fields in a rejection (e.g. ``лица[0].``).
        """
        family = normalise_spaces(family_name) if family_name else None
        given = normalise_spaces(given_names) if given_names else None
        for name, value in ((f"{field}family name", family), (f"{field}given names", given)):
            if value is not None and not any(ch.isalpha() for ch in value):
                raise RecordRejected(f"expected a name with letters, got {value!r}", field=name)
        if date_of_birth is not None and date_of_birth > datetime.now(UTC).date():
            raise RecordRejected(
                f"the date of birth {date_of_birth.isoformat()} is in the future",
                field=f"{field}date of birth",
            )
        script = detect_script(f"{family or ''}{given or ''}")
        original = script is not OriginalScript.LATIN
        return PersonRef(
            identity_token=self._identity.token(
                family, given, date_of_birth, nationality, language=self.language
            ),
            family_name=to_latin(family, self.language) if family else None,
            given_names=to_latin(given, self.language) if given else None,
            family_name_original=family if original else None,
            given_names_original=given if original else None,
            original_script=script if (family or given) else None,
            date_of_birth=date_of_birth,
            nationality=nationality,
            sex=sex,
            travel_document=travel_document,
            warning_markers=list(warning_markers),
        )


class CountryMapping(ABC):
    """One country's native records → alerts. Subclasses set the class attributes and
    ``to_alert``; everything else (reading files, publishing, quarantine) is shared."""

    #: ISO 3166-1 alpha-2, lower case: the origin of every alert and the signing key's id.
    cc: ClassVar[str]
    #: Language, time zone, date and number formats of the national system.
    conventions: ClassVar[Conventions]
    #: How the national system writes its files.
    feed: ClassVar[FeedFormat]
    #: A one-line description for ``bus adapter countries``.
    description: ClassVar[str]

    @abstractmethod
    def to_alert(self, rec: NativeRecord, ctx: MappingContext) -> Alert:
        """The alert for one native record; raise ``RecordRejected`` (through ``rec``'s getters)
        when it cannot be made."""

    def map(self, record: FeedRecord, ctx: MappingContext) -> Alert:
        """``to_alert`` for a read record, with every failure turned into ``RecordRejected``."""
        if record.error is not None:
            raise record.error
        rec = NativeRecord(record.data, self.conventions)
        try:
            return self.to_alert(rec, ctx)
        except RecordRejected:
            raise
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or None
            raise RecordRejected(
                f"the alert would not be valid: {first['msg']}",
                field=f"alert.{where}" if where else None,
            ) from exc
        except Exception as exc:
            # A record shaped in a way the mapping did not foresee (a gap in the mapping, to
            # report to the bus operators): set it aside, never crash.
            raise unexpected(exc) from exc


def available_countries() -> list[str]:
    """The country codes that have a mapping module, sorted."""
    from services.adapters import countries

    return sorted(m.name for m in pkgutil.iter_modules(countries.__path__) if len(m.name) == 2)


def load_mapping(cc: str) -> CountryMapping:
    """The mapping of country ``cc``, from ``services/adapters/countries/<cc>.py``."""
    if cc not in available_countries():
        raise AdapterError(
            f"No adapter mapping for country {cc!r}; available: {', '.join(available_countries())}"
            f". Add services/adapters/countries/{cc}.py to support it."
        )
    module = importlib.import_module(f"services.adapters.countries.{cc}")
    mapping = getattr(module, "MAPPING", None)
    if not isinstance(mapping, CountryMapping) or mapping.cc != cc:
        raise AdapterError(
            f"services/adapters/countries/{cc}.py must define MAPPING, a CountryMapping with "
            f"cc = {cc!r}"
        )
    return mapping
