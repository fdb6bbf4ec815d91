"""Montenegro: the Police Administration's JSON Lines feed, Montenegrin field names.

One JSON object per line (a broken line is one broken record). Dates and times are written
``21.07.2014. 03:40`` in Podgorica time; names in Montenegrin Latin or Cyrillic (with ś and ź,
С́ and З́). Kinds (``tip``): ``nezakonit_prelazak``, ``krijumcarenje_migranata``,
``readmisija``. A withdrawn record has ``status`` ``povučen``.
"""

# ruff: noqa: RUF001, RUF002  (Montenegrin letters are meant)

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
from services.adapters.feeds import JsonLinesFeed
from services.adapters.fields import Conventions, NativeRecord
from services.adapters.mapping import CountryMapping, MappingContext, RecordRef

MONTENEGRIN = Conventions(
    language="me",
    timezone=ZoneInfo("Europe/Podgorica"),
    date_formats=("%d.%m.%Y.", "%d.%m.%Y"),
    yes=("da",),
    no=("ne",),
)

KINDS = {
    "nezakonit_prelazak": "irregular-crossing",
    "krijumcarenje_migranata": "trafficking-arrest",
    "readmisija": "readmission",
}
WITHDRAWN = {"aktivan": False, "izmijenjen": False, "povučen": True}
TLP = {
    "javno": Tlp.CLEAR,
    "interno": Tlp.GREEN,
    "povjerljivo": Tlp.AMBER,
    "strogo povjerljivo": Tlp.AMBER_STRICT,
    "tajno": Tlp.RED,
}
RELIABILITY = {s.value: s for s in SourceReliability}
SEX = {"m": Sex.M, "ž": Sex.F, "м": Sex.M, "ж": Sex.F}
DOCUMENTS = {
    "pasoš": TravelDocumentKind.PASSPORT,
    "lična karta": TravelDocumentKind.IDENTITY_CARD,
    "dozvola boravka": TravelDocumentKind.RESIDENCE_PERMIT,
}
WARNINGS = {
    "naoružan": WarningMarker.ARMED,
    "nasilan": WarningMarker.VIOLENT,
    "sklon bjekstvu": WarningMarker.ESCAPE_RISK,
}
OUTCOMES = {
    "lišeni slobode": CrossingOutcome.APPREHENDED,
    "odbijen ulazak": CrossingOutcome.REFUSED_ENTRY,
    "vraćeni po readmisiji": CrossingOutcome.RETURNED_UNDER_READMISSION,
    "azil": CrossingOutcome.ASYLUM_PROCEDURE,
    "nijesu presretnuti": CrossingOutcome.NOT_INTERCEPTED,
}
STAGES = {
    "zahtjev": ReadmissionStage.REQUESTED,
    "prihvaćen": ReadmissionStage.ACCEPTED,
    "odbijen": ReadmissionStage.REJECTED,
    "zakazana predaja": ReadmissionStage.TRANSFER_SCHEDULED,
    "predati": ReadmissionStage.TRANSFERRED,
}


class MontenegroMapping(CountryMapping):
    cc = "me"
    conventions = MONTENEGRIN
    feed = JsonLinesFeed()
    description = "Police Administration JSON Lines feed, Montenegrin Latin or Cyrillic"

    def to_alert(self, rec: NativeRecord, ctx: MappingContext) -> Alert:
        kind = rec.choice("tip", KINDS)
        header = ctx.header(
            RecordRef(
                rec.text("broj_predmeta"),
                rec.integer("verzija", minimum=1),
                withdrawn=rec.opt_choice("status", WITHDRAWN) or False,
            ),
            issuing_agency=rec.text("organ"),
            issued_at=rec.instant("uneseno"),
            occurred_at=rec.instant("vrijeme_dogadjaja"),
            case_ref=rec.opt_text("oznaka_predmeta"),
            tlp=rec.choice("stepen_tajnosti", TLP),
            source_reliability=rec.choice("pouzdanost", RELIABILITY),
            information_accuracy=rec.integer("tacnost", minimum=1),
            explicit_recipients=rec.words("primaoci"),
        )
        if kind == "irregular-crossing":
            return _crossing(rec, header, ctx)
        if kind == "trafficking-arrest":
            return _trafficking(rec, header, ctx)
        return _readmission(rec, header, ctx)


def _person(rec: NativeRecord, ctx: MappingContext) -> PersonRef:
    doc = rec.child("isprava")
    return ctx.person(
        family_name=rec.text("prezime"),
        given_names=rec.opt_text("ime"),
        date_of_birth=rec.opt_date("datum_rodjenja"),
        nationality=rec.opt_country("drzavljanstvo"),
        sex=rec.opt_choice("pol", SEX),
        travel_document=None
        if doc is None
        else TravelDocument(
            kind=doc.choice("vrsta", DOCUMENTS),
            number=doc.opt_text("broj"),
            issuing_country=doc.opt_country("izdala"),
            expires_on=doc.opt_date("vazi_do"),
        ),
        warning_markers=rec.choices("upozorenja", WARNINGS),
    )


def _crossing(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    persons, facilitator = [], None
    for person in rec.children("lica"):
        if person.opt_text("uloga") == "krijumčar":
            facilitator = _person(person, ctx)
        else:
            persons.append(_person(person, ctx))
    return IrregularCrossing(
        header=header,
        detected_at=header.occurred_at,
        border_section=rec.text("granicni_sektor"),
        crossing_point=rec.opt_text("granicni_prelaz"),
        direction_from=rec.country("iz_drzave"),
        direction_to=rec.country("u_drzavu"),
        head_count=rec.integer("broj_lica"),
        nationality_breakdown=[
            NationalityCount(nationality=n.country("drzava"), count=n.integer("broj"))
            for n in rec.children("drzavljanstva")
        ],
        persons=persons,
        suspected_facilitator=facilitator,
        asylum_requests=rec.opt_integer("zahtjevi_za_azil") or 0,
        outcome=rec.choice("ishod", OUTCOMES),
    )


def _trafficking(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    return TraffickingArrest(
        header=header,
        arrested_at=header.occurred_at,
        place=rec.text("mjesto"),
        place_country=rec.country("drzava_mjesta"),
        arresting_authority=header.issuing_agency,
        suspects=[_person(p, ctx) for p in rec.children("lica")],
        victim_count=rec.integer("broj_zrtava"),
        victim_nationalities=rec.countries("drzavljanstva_zrtava"),
        route=rec.countries("ruta", separators="–>"),
        price_per_person_eur=rec.opt_amount("cijena_po_osobi"),
        earlier_occasions=rec.opt_integer("raniji_slucajevi"),
        summary=rec.opt_text("opis"),
    )


def _readmission(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    return Readmission(
        header=header,
        requesting_state=rec.country("drzava_molilja"),
        requested_state=rec.country("zamoljena_drzava"),
        person_count=rec.integer("broj_lica"),
        persons=[_person(p, ctx) for p in rec.children("lica")],
        legal_basis=rec.text("pravni_osnov"),
        stage=rec.choice("faza", STAGES),
        transfer_at=rec.opt_instant("predaja"),
        transfer_point=rec.opt_text("mjesto_predaje"),
        joint_return_operation=rec.opt_text("zajednicka_operacija"),
    )


MAPPING = MontenegroMapping()
