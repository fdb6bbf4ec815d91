"""Country names in the languages and scripts of the region → ISO 3166-1 alpha-2 codes.

National records name countries the way their officers write them: "Србија", "Srbija",
"Serbia", "Serbie", "Σερβία", "Shqipëri" or "Shqipëria" (Albanian nouns have a definite form).
``country_code`` folds a name (Cyrillic and Greek to Latin, accents off, lower case) and looks it
up; it also takes ISO 3166-1 alpha-2 and alpha-3 codes. Kosovo is ``xk``.

    >>> country_code("Северна Македонија"), country_code("Ελλάδα"), country_code("Mali i Zi")
    ('mk', 'gr', 'me')

To teach it a new spelling, add it to ``_NAMES``; a spelling that folds to a key another country
already has is refused when the module loads.
"""

# ruff: noqa: RUF001  (Cyrillic and Greek letters are meant)

from __future__ import annotations

import re
import unicodedata

from services.adapters.names import to_latin

# ISO code: alpha-3 code, then names (English, Serbian/Bosnian/Croatian/Montenegrin in both
# scripts, Macedonian, Albanian indefinite and definite, Greek, German, French).
_NAMES: dict[str, tuple[str, ...]] = {
    "af": ("AFG", "Afghanistan", "Avganistan", "Afganistan", "Авганистан", "Afganistani",
           "Αφγανιστάν"),
    "al": ("ALB", "Albania", "Albanija", "Албанија", "Shqipëri", "Shqipëria",
           "Αλβανία", "Albanien", "Albanie"),
    "at": ("AUT", "Austria", "Austrija", "Аустрија", "Австрија", "Austri", "Αυστρία",
           "Österreich", "Autriche"),
    "ba": ("BIH", "Bosnia and Herzegovina", "Bosnia-Herzegovina", "Bosnia", "BiH",
           "Bosna i Hercegovina", "Босна и Херцеговина", "БиХ", "Bosna",
           "Bosnja dhe Hercegovina", "Bosnje dhe Hercegovine", "Βοσνία-Ερζεγοβίνη",
           "Βοσνία και Ερζεγοβίνη", "Βοσνία", "Bosnien und Herzegowina", "Bosnie-Herzégovine"),
    "bd": ("BGD", "Bangladesh", "Bangladeš", "Бангладеш", "Bangladeshi", "Μπανγκλαντές"),
    "bg": ("BGR", "Bulgaria", "Bugarska", "Бугарска", "Бугарија", "Bullgari", "Bullgaria",
           "Βουλγαρία", "Bulgarien", "Bulgarie"),
    "cn": ("CHN", "China", "Kina", "Кина", "Κίνα", "Chine"),
    "de": ("DEU", "Germany", "Nemačka", "Njemačka", "Немачка", "Њемачка", "Германија",
           "Gjermani", "Gjermania", "Γερμανία", "Deutschland", "Allemagne"),
    "dz": ("DZA", "Algeria", "Alžir", "Алжир", "Algjeri", "Algjeria", "Αλγερία", "Algerien",
           "Algérie"),
    "eg": ("EGY", "Egypt", "Egipat", "Египат", "Египет", "Egjipt", "Egjipti", "Αίγυπτος",
           "Ägypten", "Égypte"),
    "er": ("ERI", "Eritrea", "Eritreja", "Еритреја", "Eritre", "Ερυθραία", "Érythrée"),
    "fr": ("FRA", "France", "Francuska", "Француска", "Франција", "Francë", "Franca",
           "Γαλλία", "Frankreich"),
    "gr": ("GRC", "Greece", "Hellas", "Grčka", "Грчка", "Грција", "Greqi", "Greqia", "Ελλάδα",
           "Ελλάς", "Ελληνική Δημοκρατία", "Griechenland", "Grèce"),
    "hr": ("HRV", "Croatia", "Hrvatska", "Хрватска", "Kroaci", "Kroacia", "Κροατία",
           "Kroatien", "Croatie"),
    "hu": ("HUN", "Hungary", "Mađarska", "Мађарска", "Унгарија", "Hungari", "Hungaria",
           "Ουγγαρία", "Ungarn", "Hongrie"),
    "in": ("IND", "India", "Indija", "Индија", "Indi", "Ινδία", "Indien", "Inde"),
    "iq": ("IRQ", "Iraq", "Irak", "Ирак", "Iraku", "Ιράκ"),
    "ir": ("IRN", "Iran", "Иран", "Irani", "Ιράν"),
    "it": ("ITA", "Italy", "Italija", "Италија", "Itali", "Italia", "Ιταλία", "Italien",
           "Italie"),
    "jo": ("JOR", "Jordan", "Јордан", "Jordani", "Jordanija", "Ιορδανία", "Jordanien",
           "Jordanie"),
    "lb": ("LBN", "Lebanon", "Liban", "Либан", "Libani", "Λίβανος", "Libanon"),
    "ly": ("LBY", "Libya", "Libija", "Либија", "Libi", "Libia", "Λιβύη", "Libyen", "Libye"),
    "ma": ("MAR", "Morocco", "Maroko", "Мароко", "Marok", "Maroku", "Μαρόκο", "Marokko",
           "Maroc"),
    "me": ("MNE", "Montenegro", "Crna Gora", "Црна Гора", "Mali i Zi", "Malit të Zi",
           "Μαυροβούνιο", "Monténégro"),
    "mk": ("MKD", "North Macedonia", "Macedonia", "Severna Makedonija", "Sjeverna Makedonija",
           "Северна Македонија", "Македонија", "Republika Severna Makedonija",
           "Република Северна Македонија", "Maqedonia e Veriut", "Maqedoni e Veriut",
           "Maqedonia", "Maqedoni", "Βόρεια Μακεδονία", "Nordmazedonien", "Macédoine du Nord"),
    "ng": ("NGA", "Nigeria", "Nigerija", "Нигерија", "Nigeri", "Νιγηρία", "Nigéria"),
    "pk": ("PAK", "Pakistan", "Пакистан", "Pakistani", "Πακιστάν"),
    "ps": ("PSE", "Palestine", "Palestina", "Палестина", "Palestinë", "Παλαιστίνη"),
    "rs": ("SRB", "Serbia", "Srbija", "Србија", "Republika Srbija", "Република Србија", "Serbi",
           "Σερβία", "Serbien", "Serbie"),
    "ru": ("RUS", "Russia", "Rusija", "Русија", "Rusi", "Rusia", "Ρωσία", "Russland", "Russie"),
    "si": ("SVN", "Slovenia", "Slovenija", "Словенија", "Sllovenia", "Sloveni", "Σλοβενία",
           "Slowenien", "Slovénie"),
    "sn": ("SEN", "Senegal", "Сенегал", "Senegali", "Σενεγάλη", "Sénégal"),
    "so": ("SOM", "Somalia", "Somalija", "Сомалија", "Somali", "Σομαλία", "Somalie"),
    "sy": ("SYR", "Syria", "Sirija", "Сирија", "Siri", "Siria", "Συρία", "Syrien", "Syrie"),
    "tn": ("TUN", "Tunisia", "Tunis", "Тунис", "Tunizi", "Tunizia", "Τυνησία", "Tunesien",
           "Tunisie"),
    "tr": ("TUR", "Turkey", "Türkiye", "Turska", "Турска", "Турција", "Turqi", "Turqia",
           "Τουρκία", "Türkei", "Turquie"),
    "ua": ("UKR", "Ukraine", "Ukrajina", "Украјина", "Украина", "Ukrainë", "Ukraina",
           "Ουκρανία"),
    "xk": ("XKX", "RKS", "Kosovo", "Kosova", "Kosovë", "Косово", "Κόσοβο"),
}  # fmt: skip

# Every ISO 3166-1 alpha-2 code, plus the user-assigned XK for Kosovo.
_ALPHA2 = frozenset(
    re.findall(
        r"[a-z]{2}",
        """
    ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bl bm bn bo
    bq br bs bt bv bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj
    dk dm do dz ec ee eg eh er es et fi fj fk fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp
    gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg
    kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mf mg mh mk ml
    mm mn mo mp mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe
    pf pg ph pk pl pm pn pr ps pt pw py qa re ro rs ru rw sa sb sc sd se sg sh si sj sk sl
    sm sn so sr ss st sv sx sy sz tc td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug um
    us uy uz va vc ve vg vi vn vu wf ws xk ye yt za zm zw
    """,
    )
)

_NOT_WORD = re.compile(r"[^a-z0-9]+")
_MK_TO_SR = str.maketrans({"ѓ": "ђ", "Ѓ": "Ђ", "ќ": "ћ", "Ќ": "Ћ", "ѕ": "дз", "Ѕ": "Дз"})


def fold(name: str) -> str:
    """The lookup key of a country name: Latin letters, no accents, lower case, single spaces."""
    # Serbian rules, with the Macedonian letters as their Serbian counterparts, so that a
    # Cyrillic spelling and its Latin twin ("Грчка", "Grčka") fold alike.
    latin = to_latin(name.translate(_MK_TO_SR), "sr")
    decomposed = unicodedata.normalize("NFKD", latin.replace("ë", "e").replace("Ë", "E"))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    return _NOT_WORD.sub(" ", plain.replace("đ", "dj")).strip()


def _build() -> dict[str, str]:
    table: dict[str, str] = {}
    for code, names in _NAMES.items():
        for name in (code, *names):
            key = fold(name)
            if table.setdefault(key, code) != code:
                raise ValueError(
                    f"country name {name!r} folds to {key!r}, which already means "
                    f"{table[key]!r}; make the spelling more specific"
                )
    return table


_TABLE = _build()


def country_code(name: str) -> str | None:
    """The ISO 3166-1 alpha-2 code (lower case) that ``name`` means, or None if unknown."""
    key = fold(name)
    if key in _TABLE:
        return _TABLE[key]
    if len(key) == 2 and key in _ALPHA2:
        return key
    return None
