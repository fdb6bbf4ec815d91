"""Personal names across scripts: national Latin transliteration, ICAO 9303 folding, match keys.

Three forms, for three purposes:

- ``to_latin(name, language)``: the Latin form partners read, by the national rules of the
  record's language. Serbian and Montenegrin Cyrillic follow the official Latin alphabets (Gaj's
  Latin: Петровић → Petrović), done by ``cyrtranslit``; Macedonian follows the digraph system of
  Macedonian passports (Ѓорѓи → Gjorgji, Жаклина → Zhaklina); Greek follows ELOT 743, the system
  of Greek passports and of ICAO Doc 9303 (Παπαδόπουλος → Papadopoulos, Ευάγγελος → Evangelos).
  ``cyrtranslit`` gives ISO 9 for Macedonian (Ǵorǵi) and letter-by-letter output for Greek
  (Papadopoylos), so those two tables are written out here.
- ``icao_fold(latin)``: the machine-readable-zone form of ICAO Doc 9303 part 3: upper case,
  A-Z only (PETROVIC, DERVISHI).
- ``match_key(name, language)``: a key for matching the same person across national spellings.
  Officers write a foreign name the way it sounds in their own script: Petrović is Πέτροβιτς in
  a Greek record and Петровиќ in a Macedonian one; Παπαδόπουλος is Пападопулос in a Serbian
  record. The key folds the spellings that differ only by convention (ć/č/ts/kj → C, š/sh → S,
  đ/dj/gj/xh/tz → DZ, ου → U, doubled letters…) so that such spellings converge. It is used
  only inside the keyed identity token, never shown.
"""

# ruff: noqa: RUF001, RUF002, RUF003  (Cyrillic and Greek letters are meant)

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import cyrtranslit  # type: ignore[import-untyped]

from bus.models import OriginalScript

# Macedonian Cyrillic → Latin, digraph system of Macedonian passports (also BGN/PCGN-style).
_MK = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "ѓ": "gj", "е": "e", "ж": "zh",
    "з": "z", "ѕ": "dz", "и": "i", "ј": "j", "к": "k", "л": "l", "љ": "lj", "м": "m",
    "н": "n", "њ": "nj", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "ќ": "kj",
    "у": "u", "ф": "f", "х": "h", "ц": "c", "ч": "ch", "џ": "dzh", "ш": "sh",
}  # fmt: skip

# ELOT 743 (= ISO 843 transcription, as ICAO Doc 9303 uses for Greek), single letters.
_EL = {
    "α": "a", "β": "v", "γ": "g", "δ": "d", "ε": "e", "ζ": "z", "η": "i", "θ": "th",
    "ι": "i", "κ": "k", "λ": "l", "μ": "m", "ν": "n", "ξ": "x", "ο": "o", "π": "p",
    "ρ": "r", "σ": "s", "ς": "s", "τ": "t", "υ": "y", "φ": "f", "χ": "ch", "ψ": "ps",
    "ω": "o",
}  # fmt: skip
_EL_PAIRS = {"ου": "ou", "γγ": "ng", "γξ": "nx", "γχ": "nch"}
# After these, αυ/ευ/ηυ read as a voiced [v] (else [f]): vowels and voiced consonants.
_EL_VOICED_NEXT = set("αεηιουωβγδζλμνρ")
_EL_VOWELS = set("αεηιουω")

# Greek by sound, for match keys only: how a Slavic or Albanian officer would spell it.
_EL_SOUND = _EL | {"θ": "t", "υ": "i", "ξ": "ks", "χ": "h"}
_EL_SOUND_PAIRS = {
    "ου": "u", "αι": "e", "ει": "i", "οι": "i", "υι": "i", "γκ": "g",
    "γγ": "ng", "γξ": "nks", "γχ": "nh", "τσ": "c", "τς": "c", "τζ": "dz",
}  # fmt: skip

# ICAO Doc 9303 part 3, transliteration of Latin letters with diacritics that do not decompose.
_ICAO_SPECIAL = {
    "Æ": "AE", "Ä": "AE", "Ö": "OE", "Ü": "UE", "Ø": "OE", "Œ": "OE", "Å": "AA", "ß": "SS",
    "Þ": "TH", "Đ": "D", "Ð": "D", "Ł": "L", "Ħ": "H", "Ŀ": "L", "Ĳ": "IJ", "Ŋ": "N",
    "Ŧ": "T", "ı": "I", "ʼ": "", "'": "", "’": "",
}  # fmt: skip

# The match key reads a few letters differently from ICAO: Đ keeps its affricate, Ä/Ö/Ü fold to
# the base vowel (a German ae/oe/ue would not match a Slavic or Greek spelling).
_MATCH_SPECIAL = _ICAO_SPECIAL | {"Đ": "DZ", "Ð": "DZ", "Ä": "A", "Ö": "O", "Ü": "U"}

# Letters a language reads its own way, before the common rules: Albanian q is ć (Petroviq),
# x is dz and dh is ð (written d in the Slavic languages and Greek).
_LANGUAGE_RULES: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    "sq": tuple(
        (re.compile(p), r) for p, r in ((r"XH", "DZ"), (r"X", "DZ"), (r"Q", "C"), (r"DH", "D"))
    ),
}

# Rules on the folded upper-case key, in order, for every script.
_COMMON_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"DZH|DZ|XH|TZ|DJ|GJ", "DZ"),  # џ dž xh τζ đ dj ѓ gj: voiced affricates
        (r"TSCH|TCH|TS|CH|KJ", "C"),  # ц ч ћ ќ τσ ç: voiceless affricates
        (r"SH", "S"),
        (r"ZH", "Z"),
        (r"KH", "H"),
        (r"PH", "F"),
        (r"TH", "T"),
        (r"OU", "U"),
        (r"NT", "ND"),  # Greek ντ after a vowel
        (r"MP", "MB"),  # Greek μπ after a vowel
        (r"Y", "I"),
        (r"W", "V"),
        (r"X", "KS"),
        (r"([A-Z])\1+", r"\1"),  # doubled letters: Γιάννης = Janis
    )
)

_LATIN_LETTERS = re.compile(r"[^A-Z ]+")
_SPACES = re.compile(r"\s+")


def detect_script(text: str) -> OriginalScript:
    """The script of the letters in ``text`` (the first non-Latin script found wins)."""
    for ch in text:
        if not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        if name.startswith("CYRILLIC"):
            return OriginalScript.CYRILLIC
        if name.startswith("GREEK"):
            return OriginalScript.GREEK
        if name.startswith("ARABIC"):
            return OriginalScript.ARABIC
        if not name.startswith("LATIN"):
            return OriginalScript.OTHER
    return OriginalScript.LATIN


def to_latin(text: str, language: str) -> str:
    """``text`` in Latin letters by the national rules of ``language`` (sr, bs, me, mk, el).

    Latin letters pass unchanged; Greek is transliterated whatever ``language`` says; Cyrillic by
    the rules of ``language`` (Serbian rules for any Cyrillic language but mk and me).
    """
    script = detect_script(text)
    if script is OriginalScript.GREEK:
        return _greek_to_latin(text)
    if script is not OriginalScript.CYRILLIC:
        return text
    if language == "mk":
        return _by_word(text, _macedonian_word)
    table = "me" if language == "me" else "sr"
    latin = _by_word(text, lambda word: str(cyrtranslit.to_latin(word, table)))
    return unicodedata.normalize("NFC", latin)  # С́ (С + accent) → Ś, one letter


def icao_fold(latin: str) -> str:
    """The ICAO Doc 9303 machine-readable form: upper case letters A-Z and single spaces."""
    return _fold(latin, _ICAO_SPECIAL)


def match_key(name: str, language: str) -> str:
    """A spelling-insensitive key of ``name`` for matching one person across national records."""
    if detect_script(name) is OriginalScript.GREEK:
        # From Greek by sound, not by ELOT letters: χ is h, μπ b, ντ d, αι e, ει/οι i …
        latin = _by_word(name, lambda word: _greek_word(word, phonetic=True))
    else:
        latin = to_latin(name, language)
    key = _fold(latin, _MATCH_SPECIAL)
    for pattern, replacement in _LANGUAGE_RULES.get(language, ()) + _COMMON_RULES:
        key = pattern.sub(replacement, key)
    return key


def normalise_spaces(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _fold(latin: str, special: dict[str, str]) -> str:
    upper = "".join(special.get(ch, ch) for ch in latin.upper())
    decomposed = unicodedata.normalize("NFKD", upper)
    letters = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # Hyphens and other separators become spaces, as the MRZ filler separates name parts.
    return normalise_spaces(_LATIN_LETTERS.sub(" ", letters.replace("'", "")))


def _by_word(text: str, convert: Callable[[str], str]) -> str:
    # Transliterate word by word so that an all-capitals word stays all capitals (cyrtranslit
    # writes ЉУБИЦА as LjUBICA).
    parts = re.split(r"(\w+)", text)
    out = []
    for part in parts:
        if part and part[0].isalpha():
            latin = convert(part)
            out.append(latin.upper() if part.isupper() and len(part) > 1 else latin)
        else:
            out.append(part)
    return "".join(out)


def _macedonian_word(word: str) -> str:
    out = []
    for ch in word:
        latin = _MK.get(ch.lower())
        if latin is None:
            out.append(ch)
        else:
            out.append(latin.capitalize() if ch.isupper() else latin)
    return "".join(out)


def _greek_to_latin(text: str) -> str:
    return _by_word(text, _greek_word)


def _greek_word(word: str, *, phonetic: bool = False) -> str:
    # Work on lower-case letters without accents, but keep what splits a vowel pair: a
    # diaeresis on the second vowel (Αϊτή is A-i-ti) or the accent on the first (Αχμαντζάι
    # ends in a-i, not in the digraph αι).
    letters: list[str] = []
    diaeresis: list[bool] = []
    accent: list[bool] = []
    for ch in unicodedata.normalize("NFD", word):
        if unicodedata.combining(ch):
            if letters and ch == "\u0308":
                diaeresis[-1] = True
            elif letters and ch == "\u0301":
                accent[-1] = True
            continue
        letters.append(ch.lower())
        diaeresis.append(False)
        accent.append(False)
    single = _EL_SOUND if phonetic else _EL
    pairs = _EL_SOUND_PAIRS if phonetic else _EL_PAIRS
    out: list[str] = []
    i, n = 0, len(letters)
    while i < n:
        ch, nxt = letters[i], letters[i + 1] if i + 1 < n else ""
        after = letters[i + 2] if i + 2 < n else ""
        vowel_pair = ch in _EL_VOWELS and nxt in _EL_VOWELS
        joined = bool(nxt) and not (vowel_pair and (diaeresis[i + 1] or accent[i]))
        if joined and nxt == "υ" and ch in "αεη":
            out.append(single[ch] + ("v" if after in _EL_VOICED_NEXT else "f"))
        elif joined and phonetic and ch + nxt == "ου" and i == 0 and after in _EL_VOWELS:
            out.append("v")  # ου before a vowel spells a foreign w: Ουαλί = Wali
        elif joined and phonetic and ch + nxt in ("μπ", "ντ"):
            # A foreign b/d at the start or after a consonant (Αρμπέν = Arben), [mb]/[nd]
            # after a vowel (Λάμπρος = Lambros).
            after_vowel = i > 0 and letters[i - 1] in _EL_VOWELS
            out.append(("m" if ch == "μ" else "n") * after_vowel + ("b" if ch == "μ" else "d"))
        elif joined and phonetic and ch + nxt == "γι" and after in _EL_VOWELS:
            out.append("j")  # γι before a vowel is [j]: Γιάννης = Janis
        elif joined and not phonetic and ch + nxt == "μπ":
            out.append("b" if i == 0 or i + 2 == n else "mp")  # ELOT 743
        elif joined and ch + nxt in pairs:
            out.append(pairs[ch + nxt])
        else:
            out.append(single.get(ch, ch))
            i += 1
            continue
        i += 2
    latin = "".join(out)
    first = next((c for c in word if c.isalpha()), "")
    return latin.capitalize() if first.isupper() else latin
