"""North Macedonia: the Ministry of Interior's JSON feed, in Macedonian Cyrillic.

The file is an object whose ``записи`` holds the records; each record has its persons in
``лица`` (a foreign fighter in ``лице``), each with a nested ``документ``. Dates and times are
written ``09.01.2014 03:15``, in Skopje time. Types (``тип``): ``нерегуларно_преминување``,
``реадмисија``, ``странски_борец``, ``помош_на_државјани``. Classification is a TLP label
(``TLP:AMBER``); a withdrawn record has ``статус`` ``повлечен``.
"""

# ruff: noqa: RUF001  (Cyrillic letters are meant)

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
    TravelDocument,
    TravelDocumentKind,
    TravelLeg,
    TravelStatus,
    WarningMarker,
)
from services.adapters.errors import RecordRejected
from services.adapters.feeds import JsonFeed
from services.adapters.fields import Conventions, NativeRecord
from services.adapters.mapping import CountryMapping, MappingContext, RecordRef

MACEDONIAN = Conventions(
    language="mk",
    timezone=ZoneInfo("Europe/Skopje"),
    date_formats=("%d.%m.%Y", "%d.%m.%Y."),
    yes=("да",),
    no=("не",),
)

KINDS = {
    "нерегуларно_преминување": "irregular-crossing",
    "реадмисија": "readmission",
    "странски_борец": "foreign-fighter-travel",
    "помош_на_државјани": "citizen-assistance",
}
WITHDRAWN = {"активен": False, "изменет": False, "повлечен": True}
TLP = {f"TLP:{t.value}": t for t in Tlp}
RELIABILITY = {s.value: s for s in SourceReliability}
SEX = {"м": Sex.M, "ж": Sex.F}
DOCUMENTS = {
    "пасош": TravelDocumentKind.PASSPORT,
    "лична карта": TravelDocumentKind.IDENTITY_CARD,
    "дозвола за престој": TravelDocumentKind.RESIDENCE_PERMIT,
    "патна исправа за бегалци": TravelDocumentKind.REFUGEE_TRAVEL_DOCUMENT,
    "патен лист": TravelDocumentKind.EMERGENCY_TRAVEL_DOCUMENT,
}
WARNINGS = {
    "вооружен": WarningMarker.ARMED,
    "насилен": WarningMarker.VIOLENT,
    "ризик од бегство": WarningMarker.ESCAPE_RISK,
    "здравствен ризик": WarningMarker.HEALTH_RISK,
}
OUTCOMES = {
    "приведени": CrossingOutcome.APPREHENDED,
    "одбиен влез": CrossingOutcome.REFUSED_ENTRY,
    "вратени по реадмисија": CrossingOutcome.RETURNED_UNDER_READMISSION,
    "азил": CrossingOutcome.ASYLUM_PROCEDURE,
    "непресретнати": CrossingOutcome.NOT_INTERCEPTED,
}
STAGES = {
    "барање": ReadmissionStage.REQUESTED,
    "прифатено": ReadmissionStage.ACCEPTED,
    "одбиено": ReadmissionStage.REJECTED,
    "закажано предавање": ReadmissionStage.TRANSFER_SCHEDULED,
    "предадени": ReadmissionStage.TRANSFERRED,
}
TRAVEL = {
    "планирано": TravelStatus.PLANNED,
    "заминат": TravelStatus.DEPARTED,
    "во транзит": TravelStatus.IN_TRANSIT,
    "во зона на конфликт": TravelStatus.IN_CONFLICT_ZONE,
    "се враќа": TravelStatus.RETURNING,
    "вратен": TravelStatus.RETURNED,
    "приведен": TravelStatus.DETAINED,
}
ON_HIT = {
    "информирај": HitAction.INFORM,
    "дискретна проверка": HitAction.DISCREET_CHECK,
    "специфична проверка": HitAction.SPECIFIC_CHECK,
    "апсење": HitAction.ARREST,
    "забрана за влез": HitAction.REFUSE_ENTRY,
}
ASSISTANCE = {
    "конзуларна поддршка": AssistanceAction.CONSULAR_SUPPORT,
    "евакуација": AssistanceAction.EVACUATION,
    "засолниште": AssistanceAction.SHELTER,
    "информации": AssistanceAction.INFORMATION,
}


class NorthMacedoniaMapping(CountryMapping):
    cc = "mk"
    conventions = MACEDONIAN
    feed = JsonFeed(records_key="записи")
    description = "Ministry of Interior JSON feed, Macedonian Cyrillic"

    def to_alert(self, rec: NativeRecord, ctx: MappingContext) -> Alert:
        kind = rec.choice("тип", KINDS)
        header = ctx.header(
            RecordRef(
                rec.text("идентификатор"),
                rec.integer("верзија", minimum=1),
                withdrawn=rec.opt_choice("статус", WITHDRAWN) or False,
            ),
            issuing_agency=rec.text("орган"),
            issued_at=rec.instant("внесено"),
            occurred_at=rec.instant("настан"),
            case_ref=rec.opt_text("предмет"),
            tlp=rec.choice("ознака", TLP),
            source_reliability=rec.choice("сигурност_на_изворот", RELIABILITY),
            information_accuracy=rec.integer("точност_на_информацијата", minimum=1),
            expires_at=rec.opt_instant("важи_до"),
            explicit_recipients=rec.words("примачи"),
        )
        if kind == "irregular-crossing":
            return _crossing(rec, header, ctx)
        if kind == "readmission":
            return _readmission(rec, header, ctx)
        if kind == "foreign-fighter-travel":
            return _foreign_fighter(rec, header, ctx)
        return _assistance(rec, header, ctx)


def _person(rec: NativeRecord, ctx: MappingContext) -> PersonRef:
    doc = rec.child("документ")
    return ctx.person(
        family_name=rec.text("презиме"),
        given_names=rec.opt_text("име"),
        date_of_birth=rec.opt_date("датум_на_раѓање"),
        nationality=rec.opt_country("државјанство"),
        sex=rec.opt_choice("пол", SEX),
        travel_document=None
        if doc is None
        else TravelDocument(
            kind=doc.choice("вид", DOCUMENTS),
            number=doc.opt_text("број"),
            issuing_country=doc.opt_country("издаден_од"),
            expires_on=doc.opt_date("важи_до"),
        ),
        warning_markers=rec.choices("предупредувања", WARNINGS),
    )


def _crossing(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    persons, facilitator = [], None
    for person in rec.children("лица"):
        if person.opt_text("улога") == "помагач":
            facilitator = _person(person, ctx)
        else:
            persons.append(_person(person, ctx))
    return IrregularCrossing(
        header=header,
        detected_at=header.occurred_at,
        border_section=rec.text("гранична_делница"),
        crossing_point=rec.opt_text("граничен_премин"),
        direction_from=rec.country("од_држава"),
        direction_to=rec.country("кон_држава"),
        head_count=rec.integer("број_на_лица"),
        nationality_breakdown=[
            NationalityCount(nationality=cc, count=n) for cc, n in rec.counts("државјанства")
        ],
        persons=persons,
        suspected_facilitator=facilitator,
        asylum_requests=rec.opt_integer("барања_за_азил") or 0,
        outcome=rec.choice("исход", OUTCOMES),
    )


def _readmission(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    return Readmission(
        header=header,
        requesting_state=rec.country("барател"),
        requested_state=rec.country("замолена_држава"),
        person_count=rec.integer("број_на_лица"),
        persons=[_person(p, ctx) for p in rec.children("лица")],
        legal_basis=rec.text("правен_основ"),
        stage=rec.choice("фаза", STAGES),
        transfer_at=rec.opt_instant("предавање"),
        transfer_point=rec.opt_text("место_на_предавање"),
        joint_return_operation=rec.opt_text("заедничка_операција"),
    )


def _foreign_fighter(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    person = rec.child("лице")
    if person is None:
        raise RecordRejected("is missing; a foreign-fighter record names its person", field="лице")
    return ForeignFighterTravel(
        header=header,
        person=_person(person, ctx),
        travel_status=rec.choice("статус_на_патување", TRAVEL),
        legs=[
            TravelLeg(
                from_country=leg.country("од"),
                to_country=leg.country("до"),
                departed_at=leg.opt_instant("заминување"),
                via=leg.opt_text("преку"),
            )
            for leg in rec.children("патувања")
        ],
        conflict_zone=rec.text("зона_на_конфликт"),
        is_minor=rec.flag("малолетник"),
        action_on_hit=rec.choice("постапка", ON_HIT),
    )


def _assistance(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    texts = rec.child("текстови")
    return CitizenAssistance(
        header=header,
        crisis_country=rec.country("криза_во"),
        citizen_nationality=rec.country("државјанство_на_граѓаните"),
        estimated_citizens=rec.integer("проценет_број"),
        persons=[_person(p, ctx) for p in rec.children("лица")],
        assisting_mission=rec.text("мисија"),
        represented_country=rec.country("застапува"),
        requested_action=rec.choice("барана_помош", ASSISTANCE),
        crisis_centre_contact=rec.opt_text("контакт"),
        texts=[]
        if texts is None
        else [
            LocalisedText(language=language, text=texts.text(language))
            for language in ("mk", "en", "sq")
            if texts.has(language)
        ],
    )


MAPPING = NorthMacedoniaMapping()
