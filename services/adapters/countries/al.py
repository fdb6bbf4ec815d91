"""Albania: the State Police's CSV export in Albanian, semicolon-separated, dates dd.mm.yyyy.

Written by a spreadsheet: UTF-8 with a byte-order mark, ``;`` between fields, amounts such as
``2.000 €``. One person per row. Times are Tirana time. Kinds (``lloji``):
``arrestim_trafikimi``, ``kalim_i_paligjshem``, ``riatdhesim``. A record cancelled by the police
has ``statusi`` ``anuluar``. Country names are in Albanian, definite or not (``Greqi``,
``Greqia``); routes are written ``Greqi – Shqipëri – Mali i Zi``.
"""

# ruff: noqa: RUF001, RUF002  (Albanian letters are meant)

from __future__ import annotations

from zoneinfo import ZoneInfo

from bus.models import (
    Alert,
    AlertHeader,
    CrossingOutcome,
    IrregularCrossing,
    NationalityCount,
    PersonRef,
    Readmission,
    ReadmissionStage,
    Sex,
    SourceReliability,
    Tlp,
    TraffickingArrest,
    TravelDocument,
    TravelDocumentKind,
    WarningMarker,
)
from services.adapters.feeds import CsvFeed
from services.adapters.fields import Conventions, NativeRecord
from services.adapters.mapping import CountryMapping, MappingContext, RecordRef

ALBANIAN = Conventions(
    language="sq",
    timezone=ZoneInfo("Europe/Tirane"),
    date_formats=("%d.%m.%Y",),
    yes=("po",),
    no=("jo",),
)

KINDS = {
    "arrestim_trafikimi": "trafficking-arrest",
    "kalim_i_paligjshem": "irregular-crossing",
    "riatdhesim": "readmission",
}
CANCELLED = {"aktiv": False, "ndryshuar": False, "anuluar": True}
TLP = {
    "publik": Tlp.CLEAR,
    "për përdorim zyrtar": Tlp.GREEN,
    "i kufizuar": Tlp.AMBER,
    "konfidencial": Tlp.AMBER_STRICT,
    "sekret": Tlp.RED,
}
RELIABILITY = {s.value: s for s in SourceReliability}
SEX = {"m": Sex.M, "f": Sex.F}
DOCUMENTS = {
    "pasaportë": TravelDocumentKind.PASSPORT,
    "letërnjoftim": TravelDocumentKind.IDENTITY_CARD,
    "leje qëndrimi": TravelDocumentKind.RESIDENCE_PERMIT,
    "dokument udhëtimi refugjati": TravelDocumentKind.REFUGEE_TRAVEL_DOCUMENT,
}
WARNINGS = {
    "i armatosur": WarningMarker.ARMED,
    "i dhunshëm": WarningMarker.VIOLENT,
    "rrezik arratisjeje": WarningMarker.ESCAPE_RISK,
}
OUTCOMES = {
    "ndaluar": CrossingOutcome.APPREHENDED,
    "refuzuar hyrja": CrossingOutcome.REFUSED_ENTRY,
    "kthyer me riatdhesim": CrossingOutcome.RETURNED_UNDER_READMISSION,
    "azil": CrossingOutcome.ASYLUM_PROCEDURE,
    "i pakapur": CrossingOutcome.NOT_INTERCEPTED,
}
STAGES = {
    "kërkuar": ReadmissionStage.REQUESTED,
    "pranuar": ReadmissionStage.ACCEPTED,
    "refuzuar": ReadmissionStage.REJECTED,
    "transferim i planifikuar": ReadmissionStage.TRANSFER_SCHEDULED,
    "transferuar": ReadmissionStage.TRANSFERRED,
}
ROUTE_SEPARATORS = "–>"


class AlbaniaMapping(CountryMapping):
    cc = "al"
    conventions = ALBANIAN
    feed = CsvFeed(delimiter=";")
    description = "State Police CSV export in Albanian, ';'-separated, dd.mm.yyyy"

    def to_alert(self, rec: NativeRecord, ctx: MappingContext) -> Alert:
        kind = rec.choice("lloji", KINDS)
        header = ctx.header(
            RecordRef(
                rec.text("nr_rekordit"),
                rec.integer("versioni", minimum=1),
                withdrawn=rec.opt_choice("statusi", CANCELLED) or False,
            ),
            issuing_agency=rec.text("institucioni"),
            issued_at=rec.instant("data_regjistrimit"),
            occurred_at=rec.instant("data_ngjarjes", "ora_ngjarjes"),
            case_ref=rec.opt_text("nr_procedimit"),
            tlp=rec.choice("klasifikimi", TLP),
            source_reliability=rec.choice("besueshmeria", RELIABILITY),
            information_accuracy=rec.integer("saktesia", minimum=1),
            explicit_recipients=rec.words("marresit"),
        )
        person = _person(rec, ctx)
        if kind == "trafficking-arrest":
            return _trafficking(rec, header, person)
        if kind == "irregular-crossing":
            return _crossing(rec, header, person)
        return _readmission(rec, header, person)


def _person(rec: NativeRecord, ctx: MappingContext) -> PersonRef | None:
    if not rec.has("mbiemri"):
        return None
    document = None
    if rec.has("dokumenti"):
        document = TravelDocument(
            kind=rec.choice("dokumenti", DOCUMENTS),
            number=rec.opt_text("nr_dokumentit"),
            issuing_country=rec.opt_country("leshuar_nga"),
            expires_on=rec.opt_date("skadon_me"),
        )
    return ctx.person(
        family_name=rec.text("mbiemri"),
        given_names=rec.opt_text("emri"),
        date_of_birth=rec.opt_date("datelindja"),
        nationality=rec.opt_country("shtetesia"),
        sex=rec.opt_choice("gjinia", SEX),
        travel_document=document,
        warning_markers=rec.choices("paralajmerime", WARNINGS),
    )


def _trafficking(rec: NativeRecord, header: AlertHeader, person: PersonRef | None) -> Alert:
    return TraffickingArrest(
        header=header,
        arrested_at=header.occurred_at,
        place=rec.text("vendi"),
        place_country=rec.country("shteti_vendit"),
        arresting_authority=header.issuing_agency,
        suspects=[person] if person is not None else [],
        victim_count=rec.integer("numri_viktimave"),
        victim_nationalities=rec.countries("shtetesite_viktimave"),
        route=rec.countries("itinerari", separators=ROUTE_SEPARATORS),
        price_per_person_eur=rec.opt_amount("cmimi_per_person"),
        earlier_occasions=rec.opt_integer("raste_te_meparshme"),
        summary=rec.opt_text("pershkrimi"),
    )


def _crossing(rec: NativeRecord, header: AlertHeader, person: PersonRef | None) -> Alert:
    facilitator = person if rec.opt_text("roli") == "ndihmës" else None
    return IrregularCrossing(
        header=header,
        detected_at=header.occurred_at,
        border_section=rec.text("seksioni_kufitar"),
        crossing_point=rec.opt_text("pika_kufitare"),
        direction_from=rec.country("nga_shteti"),
        direction_to=rec.country("drejt_shtetit"),
        head_count=rec.integer("numri_personave"),
        nationality_breakdown=[
            NationalityCount(nationality=cc, count=n) for cc, n in rec.counts("shtetesite")
        ],
        persons=[person] if person is not None and facilitator is None else [],
        suspected_facilitator=facilitator,
        asylum_requests=rec.opt_integer("kerkesa_azili") or 0,
        outcome=rec.choice("perfundimi", OUTCOMES),
    )


def _readmission(rec: NativeRecord, header: AlertHeader, person: PersonRef | None) -> Alert:
    return Readmission(
        header=header,
        requesting_state=rec.country("shteti_kerkues"),
        requested_state=rec.country("shteti_i_kerkuar"),
        person_count=rec.integer("numri_personave"),
        persons=[person] if person is not None else [],
        legal_basis=rec.text("baza_ligjore"),
        stage=rec.choice("faza", STAGES),
        transfer_at=rec.opt_instant("data_transferimit", "ora_transferimit"),
        transfer_point=rec.opt_text("pika_transferimit"),
        joint_return_operation=rec.opt_text("operacion_i_perbashket"),
    )


MAPPING = AlbaniaMapping()
