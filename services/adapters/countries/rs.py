"""Serbia: the Ministry of Interior's CSV export, field names and names of persons in Cyrillic.

One row per event, one person per row (the suspect, facilitator or migrant the row is about);
columns that do not apply to the row's kind are empty. Dates are written ``09.01.2014.`` (with
the closing dot of Serbian usage), times ``03:15`` in Belgrade time. Kinds (``врста``):
``нелегални_прелазак``, ``кријумчарење_људи``, ``реадмисија``, ``страни_борац``,
``помоћ_држављанима``. A record withdrawn by the ministry has ``статус`` ``повучен``.
"""

# ruff: noqa: RUF001, RUF003  (Cyrillic and Greek letters are meant)

from __future__ import annotations

from zoneinfo import ZoneInfo

from bus.models import (
    Alert,
    AlertHeader,
    AssistanceAction,
    CitizenAssistance,
    CrossingOutcome,
    ForeignFighterTravel,
    HitAction,
    IrregularCrossing,
    LocalisedText,
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
    TravelLeg,
    TravelStatus,
    WarningMarker,
)
from services.adapters.errors import RecordRejected
from services.adapters.feeds import CsvFeed
from services.adapters.fields import Conventions, NativeRecord
from services.adapters.mapping import CountryMapping, MappingContext, RecordRef

SERBIAN = Conventions(
    language="sr",
    timezone=ZoneInfo("Europe/Belgrade"),
    date_formats=("%d.%m.%Y.", "%d.%m.%Y"),
    yes=("да", "da"),
    no=("не", "ne"),
)

KINDS = {
    "нелегални_прелазак": "irregular-crossing",
    "кријумчарење_људи": "trafficking-arrest",
    "реадмисија": "readmission",
    "страни_борац": "foreign-fighter-travel",
    "помоћ_држављанима": "citizen-assistance",
}
RECORD_STATUS = {"активан": False, "измењен": False, "повучен": True}
# Serbian classification levels (Закон о тајности података) as TLP.
TLP = {
    "јавно": Tlp.CLEAR,
    "интерно": Tlp.GREEN,
    "поверљиво": Tlp.AMBER,
    "строго поверљиво": Tlp.AMBER_STRICT,
    "државна тајна": Tlp.RED,
}
RELIABILITY = {
    "А": SourceReliability.A, "Б": SourceReliability.B, "Ц": SourceReliability.C,
    "Х": SourceReliability.X, "A": SourceReliability.A, "B": SourceReliability.B,
    "C": SourceReliability.C, "X": SourceReliability.X,
}  # fmt: skip
SEX = {"м": Sex.M, "ж": Sex.F, "х": Sex.X}
DOCUMENTS = {
    "пасош": TravelDocumentKind.PASSPORT,
    "лична карта": TravelDocumentKind.IDENTITY_CARD,
    "боравишна дозвола": TravelDocumentKind.RESIDENCE_PERMIT,
    "путна исправа за избеглице": TravelDocumentKind.REFUGEE_TRAVEL_DOCUMENT,
    "путни лист": TravelDocumentKind.EMERGENCY_TRAVEL_DOCUMENT,
    "друго": TravelDocumentKind.OTHER,
}
WARNINGS = {
    "наоружан": WarningMarker.ARMED,
    "насилан": WarningMarker.VIOLENT,
    "склон бекству": WarningMarker.ESCAPE_RISK,
    "ризик од самоубиства": WarningMarker.SUICIDE_RISK,
    "здравствени ризик": WarningMarker.HEALTH_RISK,
    "друго": WarningMarker.OTHER,
}
OUTCOMES = {
    "приведени": CrossingOutcome.APPREHENDED,
    "одбијен улазак": CrossingOutcome.REFUSED_ENTRY,
    "враћени по реадмисији": CrossingOutcome.RETURNED_UNDER_READMISSION,
    "поступак азила": CrossingOutcome.ASYLUM_PROCEDURE,
    "нису пресретнути": CrossingOutcome.NOT_INTERCEPTED,
    "непознато": CrossingOutcome.UNKNOWN,
}
STAGES = {
    "поднет захтев": ReadmissionStage.REQUESTED,
    "прихваћен": ReadmissionStage.ACCEPTED,
    "одбијен": ReadmissionStage.REJECTED,
    "заказана предаја": ReadmissionStage.TRANSFER_SCHEDULED,
    "предат": ReadmissionStage.TRANSFERRED,
}
TRAVEL = {
    "планирано": TravelStatus.PLANNED,
    "отпутовао": TravelStatus.DEPARTED,
    "у транзиту": TravelStatus.IN_TRANSIT,
    "у зони сукоба": TravelStatus.IN_CONFLICT_ZONE,
    "враћа се": TravelStatus.RETURNING,
    "вратио се": TravelStatus.RETURNED,
    "задржан": TravelStatus.DETAINED,
}
ON_HIT = {
    "обавестити": HitAction.INFORM,
    "дискретна провера": HitAction.DISCREET_CHECK,
    "специфична провера": HitAction.SPECIFIC_CHECK,
    "хапшење": HitAction.ARREST,
    "забрана уласка": HitAction.REFUSE_ENTRY,
}
ASSISTANCE = {
    "конзуларна подршка": AssistanceAction.CONSULAR_SUPPORT,
    "евакуација": AssistanceAction.EVACUATION,
    "смештај": AssistanceAction.SHELTER,
    "информисање": AssistanceAction.INFORMATION,
    "друго": AssistanceAction.OTHER,
}
FACILITATOR_ROLES = {"кријумчар", "помагач"}


class SerbiaMapping(CountryMapping):
    cc = "rs"
    conventions = SERBIAN
    feed = CsvFeed(delimiter=",")
    description = "Ministry of Interior CSV export, Serbian Cyrillic field names and names"

    def to_alert(self, rec: NativeRecord, ctx: MappingContext) -> Alert:
        kind = rec.choice("врста", KINDS)
        header = ctx.header(
            RecordRef(
                rec.text("ид_записа"),
                rec.integer("верзија", minimum=1),
                withdrawn=rec.opt_choice("статус", RECORD_STATUS) or False,
            ),
            issuing_agency=rec.text("орган"),
            issued_at=rec.instant("унето"),
            occurred_at=rec.instant("датум", "време"),
            case_ref=rec.opt_text("предмет"),
            tlp=rec.choice("ознака_тајности", TLP),
            source_reliability=rec.choice("поузданост", RELIABILITY),
            information_accuracy=rec.integer("тачност", minimum=1),
            expires_at=rec.opt_instant("важи_до"),
            explicit_recipients=rec.words("примаоци"),
        )
        person = _person(rec, ctx)
        if kind == "irregular-crossing":
            return _crossing(rec, header, person)
        if kind == "trafficking-arrest":
            return _trafficking(rec, header, person)
        if kind == "readmission":
            return _readmission(rec, header, person)
        if kind == "foreign-fighter-travel":
            return _foreign_fighter(rec, header, person)
        return _assistance(rec, header, person)


def _person(rec: NativeRecord, ctx: MappingContext) -> PersonRef | None:
    if not (rec.has("презиме") or rec.has("име")):
        return None
    document = None
    if rec.has("документ"):
        document = TravelDocument(
            kind=rec.choice("документ", DOCUMENTS),
            number=rec.opt_text("број_документа"),
            issuing_country=rec.opt_country("документ_издат"),
            expires_on=rec.opt_date("документ_важи"),
        )
    return ctx.person(
        family_name=rec.opt_text("презиме"),
        given_names=rec.opt_text("име"),
        date_of_birth=rec.opt_date("датум_рођења"),
        nationality=rec.opt_country("држављанство"),
        sex=rec.opt_choice("пол", SEX),
        travel_document=document,
        warning_markers=rec.choices("упозорења", WARNINGS),
    )


def _crossing(rec: NativeRecord, header: AlertHeader, person: PersonRef | None) -> Alert:
    facilitator = person if rec.opt_text("улога") in FACILITATOR_ROLES else None
    return IrregularCrossing(
        header=header,
        detected_at=header.occurred_at,
        border_section=rec.text("деоница"),
        crossing_point=rec.opt_text("гранични_прелаз"),
        direction_from=rec.country("правац_из"),
        direction_to=rec.country("правац_у"),
        head_count=rec.integer("број_лица"),
        nationality_breakdown=[
            NationalityCount(nationality=cc, count=n) for cc, n in rec.counts("држављанства")
        ],
        persons=[person] if person is not None and facilitator is None else [],
        suspected_facilitator=facilitator,
        asylum_requests=rec.opt_integer("захтеви_за_азил") or 0,
        outcome=rec.choice("исход", OUTCOMES),
    )


def _trafficking(rec: NativeRecord, header: AlertHeader, person: PersonRef | None) -> Alert:
    return TraffickingArrest(
        header=header,
        arrested_at=header.occurred_at,
        place=rec.text("место"),
        place_country=rec.country("држава_места"),
        arresting_authority=header.issuing_agency,
        suspects=[person] if person is not None else [],
        victim_count=rec.integer("број_жртава"),
        victim_nationalities=rec.countries("држављанства_жртава"),
        route=rec.countries("рута", separators=">"),
        price_per_person_eur=rec.opt_amount("цена_по_особи"),
        earlier_occasions=rec.opt_integer("ранији_случајеви"),
        summary=rec.opt_text("опис"),
    )


def _readmission(rec: NativeRecord, header: AlertHeader, person: PersonRef | None) -> Alert:
    return Readmission(
        header=header,
        requesting_state=rec.country("држава_молиља"),
        requested_state=rec.country("замољена_држава"),
        person_count=rec.integer("број_лица"),
        persons=[person] if person is not None else [],
        legal_basis=rec.text("правни_основ"),
        stage=rec.choice("фаза", STAGES),
        transfer_at=rec.opt_instant("предаја_датум", "предаја_време"),
        transfer_point=rec.opt_text("место_предаје"),
        joint_return_operation=rec.opt_text("заједничка_операција"),
    )


def _foreign_fighter(rec: NativeRecord, header: AlertHeader, person: PersonRef | None) -> Alert:
    if person is None:
        raise RecordRejected(
            "is missing; a foreign-fighter record names its person", field="презиме"
        )
    return ForeignFighterTravel(
        header=header,
        person=person,
        travel_status=rec.choice("статус_путовања", TRAVEL),
        legs=_legs(rec, "путовање"),
        conflict_zone=rec.text("зона_сукоба"),
        is_minor=rec.flag("малолетан"),
        action_on_hit=rec.choice("мера", ON_HIT),
    )


def _legs(rec: NativeRecord, name: str) -> list[TravelLeg]:
    """Legs written "Србија > Турска 12.03.2015. 06:10; Турска > Сирија"."""
    legs = []
    for text in rec.words(name, separators=";"):
        route, _, when = text.partition(" @ ")
        origin, sep, destination = route.partition(">")
        if not sep:
            raise RecordRejected(f"expected 'from > to', got {text!r}", field=name)
        leg = NativeRecord(
            {"из": origin.strip(), "у": destination.strip(), "кад": when.strip()},
            rec.conventions,
            prefix=f"{name}.",
        )
        legs.append(
            TravelLeg(
                from_country=leg.country("из"),
                to_country=leg.country("у"),
                departed_at=leg.opt_instant("кад"),
            )
        )
    return legs


def _assistance(rec: NativeRecord, header: AlertHeader, person: PersonRef | None) -> Alert:
    texts = [
        LocalisedText(language=language, text=text)
        for language, field in (("sr", "текст"), ("en", "текст_ен"))
        if (text := rec.opt_text(field))
    ]
    return CitizenAssistance(
        header=header,
        crisis_country=rec.country("држава_кризе"),
        citizen_nationality=rec.country("држављанство_грађана"),
        estimated_citizens=rec.integer("процена_броја"),
        persons=[person] if person is not None else [],
        assisting_mission=rec.text("мисија"),
        represented_country=rec.country("заступа"),
        requested_action=rec.choice("тражена_помоћ", ASSISTANCE),
        crisis_centre_contact=rec.opt_text("контакт"),
        texts=texts,
    )


MAPPING = SerbiaMapping()
