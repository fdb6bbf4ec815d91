"""Greece: the Hellenic Police's JSON export, field names and names of persons in Greek.

The file is a JSON array of records; persons are in ``πρόσωπα``, each with a nested
``έγγραφο``. Dates are ``21/07/2014``, times ``03:40`` in Athens time. Categories
(``κατηγορία``): ``παράνομη_είσοδος``, ``σύλληψη_διακινητή``, ``επανεισδοχή``. Classification
(``διαβάθμιση``) follows the Greek levels; source reliability uses the Greek letters Α, Β, Γ, Χ.
Names of foreigners are written in Greek as they sound (Petrović is ``Πέτροβιτς``).
"""

# ruff: noqa: RUF001, RUF002  (Greek letters are meant)

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
from services.adapters.feeds import JsonFeed
from services.adapters.fields import Conventions, NativeRecord
from services.adapters.mapping import CountryMapping, MappingContext, RecordRef

GREEK = Conventions(
    language="el",
    timezone=ZoneInfo("Europe/Athens"),
    date_formats=("%d/%m/%Y",),
    yes=("ναι",),
    no=("όχι",),
)

KINDS = {
    "παράνομη_είσοδος": "irregular-crossing",
    "σύλληψη_διακινητή": "trafficking-arrest",
    "επανεισδοχή": "readmission",
}
WITHDRAWN = {"ενεργή": False, "τροποποιήθηκε": False, "ανακλήθηκε": True}
TLP = {
    "ΔΗΜΟΣΙΟ": Tlp.CLEAR,
    "ΑΔΙΑΒΑΘΜΗΤΟ": Tlp.GREEN,
    "ΠΕΡΙΟΡΙΣΜΕΝΗΣ ΧΡΗΣΗΣ": Tlp.AMBER,
    "ΕΜΠΙΣΤΕΥΤΙΚΟ": Tlp.AMBER_STRICT,
    "ΑΠΟΡΡΗΤΟ": Tlp.RED,
}
RELIABILITY = {
    "Α": SourceReliability.A,
    "Β": SourceReliability.B,
    "Γ": SourceReliability.C,
    "Χ": SourceReliability.X,
}
SEX = {"α": Sex.M, "θ": Sex.F}  # άρρεν, θήλυ
DOCUMENTS = {
    "διαβατήριο": TravelDocumentKind.PASSPORT,
    "δελτίο ταυτότητας": TravelDocumentKind.IDENTITY_CARD,
    "άδεια διαμονής": TravelDocumentKind.RESIDENCE_PERMIT,
    "ταξιδιωτικό έγγραφο προσφύγων": TravelDocumentKind.REFUGEE_TRAVEL_DOCUMENT,
}
WARNINGS = {
    "οπλοφορεί": WarningMarker.ARMED,
    "βίαιος": WarningMarker.VIOLENT,
    "κίνδυνος διαφυγής": WarningMarker.ESCAPE_RISK,
}
OUTCOMES = {
    "σύλληψη": CrossingOutcome.APPREHENDED,
    "απαγόρευση εισόδου": CrossingOutcome.REFUSED_ENTRY,
    "επανεισδοχή": CrossingOutcome.RETURNED_UNDER_READMISSION,
    "άσυλο": CrossingOutcome.ASYLUM_PROCEDURE,
    "διέφυγαν": CrossingOutcome.NOT_INTERCEPTED,
}
STAGES = {
    "αίτημα": ReadmissionStage.REQUESTED,
    "αποδοχή": ReadmissionStage.ACCEPTED,
    "απόρριψη": ReadmissionStage.REJECTED,
    "προγραμματισμένη παράδοση": ReadmissionStage.TRANSFER_SCHEDULED,
    "παραδόθηκαν": ReadmissionStage.TRANSFERRED,
}


class GreeceMapping(CountryMapping):
    cc = "gr"
    conventions = GREEK
    feed = JsonFeed()
    description = "Hellenic Police JSON export, Greek field names and names"

    def to_alert(self, rec: NativeRecord, ctx: MappingContext) -> Alert:
        kind = rec.choice("κατηγορία", KINDS)
        header = ctx.header(
            RecordRef(
                rec.text("αριθμός_καταχώρισης"),
                rec.integer("έκδοση", minimum=1),
                withdrawn=rec.opt_choice("κατάσταση", WITHDRAWN) or False,
            ),
            issuing_agency=rec.text("υπηρεσία"),
            issued_at=rec.instant("καταχώριση"),
            occurred_at=rec.instant("ημερομηνία", "ώρα"),
            case_ref=rec.opt_text("αριθμός_δικογραφίας"),
            tlp=rec.choice("διαβάθμιση", TLP),
            source_reliability=rec.choice("αξιοπιστία_πηγής", RELIABILITY),
            information_accuracy=rec.integer("ακρίβεια", minimum=1),
            explicit_recipients=rec.words("παραλήπτες"),
        )
        if kind == "trafficking-arrest":
            return _trafficking(rec, header, ctx)
        if kind == "irregular-crossing":
            return _crossing(rec, header, ctx)
        return _readmission(rec, header, ctx)


def _person(rec: NativeRecord, ctx: MappingContext) -> PersonRef:
    doc = rec.child("έγγραφο")
    return ctx.person(
        family_name=rec.text("επώνυμο"),
        given_names=rec.opt_text("όνομα"),
        date_of_birth=rec.opt_date("ημερομηνία_γέννησης"),
        nationality=rec.opt_country("υπηκοότητα"),
        sex=rec.opt_choice("φύλο", SEX),
        travel_document=None
        if doc is None
        else TravelDocument(
            kind=doc.choice("τύπος", DOCUMENTS),
            number=doc.opt_text("αριθμός"),
            issuing_country=doc.opt_country("χώρα_έκδοσης"),
            expires_on=doc.opt_date("λήξη"),
        ),
        warning_markers=rec.choices("επισημάνσεις", WARNINGS),
    )


def _trafficking(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    return TraffickingArrest(
        header=header,
        arrested_at=header.occurred_at,
        place=rec.text("τόπος"),
        place_country=rec.country("χώρα_τόπου"),
        arresting_authority=header.issuing_agency,
        suspects=[_person(p, ctx) for p in rec.children("πρόσωπα")],
        victim_count=rec.integer("αριθμός_θυμάτων"),
        victim_nationalities=rec.countries("υπηκοότητες_θυμάτων"),
        route=rec.countries("διαδρομή"),
        price_per_person_eur=rec.opt_amount("αμοιβή_ανά_άτομο"),
        earlier_occasions=rec.opt_integer("προηγούμενα_περιστατικά"),
        summary=rec.opt_text("περίληψη"),
    )


def _crossing(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    persons, facilitator = [], None
    for person in rec.children("πρόσωπα"):
        if person.opt_text("ρόλος") == "διακινητής":
            facilitator = _person(person, ctx)
        else:
            persons.append(_person(person, ctx))
    return IrregularCrossing(
        header=header,
        detected_at=header.occurred_at,
        border_section=rec.text("τομέας_συνόρων"),
        crossing_point=rec.opt_text("σημείο_διέλευσης"),
        direction_from=rec.country("από"),
        direction_to=rec.country("προς"),
        head_count=rec.integer("αριθμός_ατόμων"),
        nationality_breakdown=[
            NationalityCount(nationality=cc, count=n) for cc, n in rec.counts("υπηκοότητες")
        ],
        persons=persons,
        suspected_facilitator=facilitator,
        asylum_requests=rec.opt_integer("αιτήματα_ασύλου") or 0,
        outcome=rec.choice("έκβαση", OUTCOMES),
    )


def _readmission(rec: NativeRecord, header: AlertHeader, ctx: MappingContext) -> Alert:
    return Readmission(
        header=header,
        requesting_state=rec.country("αιτούσα_χώρα"),
        requested_state=rec.country("αποδέκτρια_χώρα"),
        person_count=rec.integer("αριθμός_ατόμων"),
        persons=[_person(p, ctx) for p in rec.children("πρόσωπα")],
        legal_basis=rec.text("νομική_βάση"),
        stage=rec.choice("στάδιο", STAGES),
        transfer_at=rec.opt_instant("ημερομηνία_παράδοσης", "ώρα_παράδοσης"),
        transfer_point=rec.opt_text("σημείο_παράδοσης"),
        joint_return_operation=rec.opt_text("κοινή_επιχείρηση"),
    )


MAPPING = GreeceMapping()
