"""Bosnia and Herzegovina: the Border Police's XML export, field names in Bosnian.

``<evidencija>`` holds ``<zapis id=… verzija=… status=…>`` elements. Classification, reliability
and accuracy are attributes of ``<oznaka>``; persons are ``<osobe><osoba uloga=…>``; dates are
ISO 8601 (``2018-05-14``), times local to Sarajevo (``2018-05-14T03:40:00``). Kinds
(``<vrsta>``): ``ilegalni_prelazak``, ``readmisija``, ``strani_borac``, ``pomoc_drzavljanima``.
Names are in Latin or, from the Republika Srpska, in Cyrillic. Over HTTP the same record is the
JSON object the XML element reads as (attributes and child elements as keys).
"""

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
from services.adapters.feeds import XmlFeed
from services.adapters.fields import Conventions, NativeRecord
from services.adapters.mapping import CountryMapping, MappingContext, RecordRef
from services.adapters.xmltree import TEXT_KEY

BOSNIAN = Conventions(
    language="bs",
    timezone=ZoneInfo("Europe/Sarajevo"),
    date_formats=("%Y-%m-%d", "%d.%m.%Y."),
    yes=("da", "true"),
    no=("ne", "false"),
)

KINDS = {
    "ilegalni_prelazak": "irregular-crossing",
    "readmisija": "readmission",
    "strani_borac": "foreign-fighter-travel",
    "pomoc_drzavljanima": "citizen-assistance",
}
WITHDRAWN = {"aktivan": False, "izmijenjen": False, "povučen": True}
TLP = {t.value: t for t in Tlp}
RELIABILITY = {s.value: s for s in SourceReliability}
SEX = {"m": Sex.M, "ž": Sex.F, "z": Sex.F, "м": Sex.M, "ж": Sex.F}  # Latin or Cyrillic
DOCUMENTS = {
    "pasoš": TravelDocumentKind.PASSPORT,
    "lična karta": TravelDocumentKind.IDENTITY_CARD,
    "dozvola boravka": TravelDocumentKind.RESIDENCE_PERMIT,
    "putni list": TravelDocumentKind.EMERGENCY_TRAVEL_DOCUMENT,
    "bez dokumenta": TravelDocumentKind.OTHER,
}
WARNINGS = {
    "naoružan": WarningMarker.ARMED,
    "nasilan": WarningMarker.VIOLENT,
    "sklon bijegu": WarningMarker.ESCAPE_RISK,
    "zdravstveni rizik": WarningMarker.HEALTH_RISK,
}
OUTCOMES = {
    "zadržani": CrossingOutcome.APPREHENDED,
    "odbijen ulaz": CrossingOutcome.REFUSED_ENTRY,
    "vraćeni po readmisiji": CrossingOutcome.RETURNED_UNDER_READMISSION,
    "azil": CrossingOutcome.ASYLUM_PROCEDURE,
    "nisu presretnuti": CrossingOutcome.NOT_INTERCEPTED,
}
STAGES = {
    "zahtjev": ReadmissionStage.REQUESTED,
    "prihvaćen": ReadmissionStage.ACCEPTED,
    "odbijen": ReadmissionStage.REJECTED,
    "zakazana predaja": ReadmissionStage.TRANSFER_SCHEDULED,
    "predani": ReadmissionStage.TRANSFERRED,
}
TRAVEL = {
    "planirano": TravelStatus.PLANNED,
    "otputovao": TravelStatus.DEPARTED,
    "u tranzitu": TravelStatus.IN_TRANSIT,
    "u zoni sukoba": TravelStatus.IN_CONFLICT_ZONE,
    "vraća se": TravelStatus.RETURNING,
    "vratio se": TravelStatus.RETURNED,
    "zadržan": TravelStatus.DETAINED,
}
ON_HIT = {
    "obavijestiti": HitAction.INFORM,
    "diskretna provjera": HitAction.DISCREET_CHECK,
    "posebna provjera": HitAction.SPECIFIC_CHECK,
    "hapšenje": HitAction.ARREST,
    "zabrana ulaska": HitAction.REFUSE_ENTRY,
}
ASSISTANCE = {
    "konzularna podrška": AssistanceAction.CONSULAR_SUPPORT,
    "evakuacija": AssistanceAction.EVACUATION,
    "smještaj": AssistanceAction.SHELTER,
    "informacije": AssistanceAction.INFORMATION,
}


class BosniaMapping(CountryMapping):
    cc = "ba"
    conventions = BOSNIAN
    feed = XmlFeed(record_tag="zapis")
    description = "Border Police XML export, Bosnian field names, ISO dates"

    def to_alert(self, rec: NativeRecord, ctx: MappingContext) -> Alert:
        kind = rec.choice("vrsta", KINDS)
        label = rec.child("oznaka")
        if label is None:
            raise RecordRejected(
                "is missing; it carries tlp, pouzdanost and tacnost", field="oznaka"
            )
        header = ctx.header(
            RecordRef(
                rec.text("id"),
                rec.integer("verzija", minimum=1),
                withdrawn=rec.opt_choice("status", WITHDRAWN) or False,
            ),
            issuing_agency=rec.text("organ"),
            issued_at=rec.instant("uneseno"),
            occurred_at=rec.instant("dogadjaj"),
            case_ref=rec.opt_text("predmet"),
            tlp=label.choice("tlp", TLP),
            source_reliability=label.choice("pouzdanost", RELIABILITY),
            information_accuracy=label.integer("tacnost", minimum=1),
            expires_at=rec.opt_instant("vazi_do"),
            explicit_recipients=rec.words("primaoci", item="primalac"),
        )
        if kind == "irregular-crossing":
            return _crossing(rec, header, ctx)
        if kind == "readmission":
            return _readmission(rec, header, ctx)
        if kind == "foreign-fighter-travel":
            return _foreign_fighter(rec, header, ctx)
        return _assistance(rec, header, ctx)


def _person(rec: NativeRecord, ctx: MappingContext) -> PersonRef:
    doc = rec.child("dokument")
    return ctx.person(
        family_name=rec.text("prezime"),
        given_names=rec.opt_text("ime"),
        date_of_birth=rec.opt_date("datum_rodjenja"),
        nationality=rec.opt_country("drzavljanstvo"),
        sex=rec.opt_choice("spol", SEX),
        travel_document=None
        if doc is None
        else TravelDocument(
            kind=doc.choice("vrsta", DOCUMENTS),
            number=doc.opt_text("broj"),
            issuing_country=doc.opt_country("izdao"),
            expires_on=doc.opt_date("vazi_do"),
        ),
        warning_markers=rec.choices("upozorenja", WARNINGS, item="upozorenje"),
    )


def _persons(rec: NativeRecord, ctx: MappingContext) -> list[PersonRef]:
    return [_person(p, ctx) for p in rec.children("osobe", "osoba")]


def _crossing(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    crossing = rec.child("prelazak")
    if crossing is None:
        raise RecordRejected("is missing; it describes the crossing", field="prelazak")
    persons, facilitator = [], None
    for person in rec.children("osobe", "osoba"):
        if person.opt_text("uloga") == "krijumčar":
            facilitator = _person(person, ctx)
        else:
            persons.append(_person(person, ctx))
    return IrregularCrossing(
        header=header,
        detected_at=header.occurred_at,
        border_section=crossing.text("dionica"),
        crossing_point=crossing.opt_text("mjesto"),
        direction_from=crossing.country("iz"),
        direction_to=crossing.country("u"),
        head_count=crossing.integer("broj_osoba"),
        nationality_breakdown=[
            NationalityCount(nationality=n.country("zemlja"), count=n.integer("broj"))
            for n in rec.children("drzavljanstva", "drzavljanstvo")
        ],
        persons=persons,
        suspected_facilitator=facilitator,
        asylum_requests=crossing.opt_integer("zahtjevi_za_azil") or 0,
        outcome=crossing.choice("ishod", OUTCOMES),
    )


def _readmission(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    return Readmission(
        header=header,
        requesting_state=rec.country("drzava_molilja"),
        requested_state=rec.country("zamoljena_drzava"),
        person_count=rec.integer("broj_osoba"),
        persons=_persons(rec, ctx),
        legal_basis=rec.text("pravni_osnov"),
        stage=rec.choice("faza", STAGES),
        transfer_at=rec.opt_instant("predaja"),
        transfer_point=rec.opt_text("mjesto_predaje"),
        joint_return_operation=rec.opt_text("zajednicka_operacija"),
    )


def _foreign_fighter(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    persons = _persons(rec, ctx)
    if len(persons) != 1:
        raise RecordRejected(
            f"expected exactly one <osoba> for a foreign fighter, got {len(persons)}", field="osobe"
        )
    return ForeignFighterTravel(
        header=header,
        person=persons[0],
        travel_status=rec.choice("status_putovanja", TRAVEL),
        legs=[
            TravelLeg(
                from_country=leg.country("iz"),
                to_country=leg.country("u"),
                departed_at=leg.opt_instant("polazak"),
                via=leg.opt_text("preko"),
            )
            for leg in rec.children("putovanje", "dionica")
        ],
        conflict_zone=rec.text("zona_sukoba"),
        is_minor=rec.flag("maloljetan"),
        action_on_hit=rec.choice("mjera", ON_HIT),
    )


def _assistance(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    return CitizenAssistance(
        header=header,
        crisis_country=rec.country("drzava_krize"),
        citizen_nationality=rec.country("drzavljanstvo_gradjana"),
        estimated_citizens=rec.integer("procjena_broja"),
        persons=_persons(rec, ctx),
        assisting_mission=rec.text("misija"),
        represented_country=rec.country("zastupa"),
        requested_action=rec.choice("trazena_pomoc", ASSISTANCE),
        crisis_centre_contact=rec.opt_text("kontakt"),
        texts=[
            LocalisedText(language=t.text("jezik"), text=t.text(TEXT_KEY))
            for t in rec.children("tekstovi", "tekst")
        ],
    )


MAPPING = BosniaMapping()
