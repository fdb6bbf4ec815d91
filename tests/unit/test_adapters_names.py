"""Names across scripts: national transliteration, ICAO folding, match keys, identity tokens."""

# ruff: noqa: RUF001  (Cyrillic and Greek letters are meant)

from __future__ import annotations

from datetime import date

import pytest

from bus.models import OriginalScript
from services.adapters.country_names import country_code
from services.adapters.errors import AdapterError
from services.adapters.identity import IdentityHasher
from services.adapters.names import detect_script, icao_fold, match_key, to_latin
from services.adapters.settings import AdapterSettings

KEY = b"k" * 32


@pytest.mark.parametrize(
    ("name", "language", "latin"),
    [
        # Serbian Cyrillic → Gaj's Latin (the official Latin alphabet), capitals kept.
        ("Петровић", "sr", "Petrović"),
        ("Ђорђе Шћекић", "sr", "Đorđe Šćekić"),
        ("ЉУБИЦА Џаја", "sr", "LJUBICA Džaja"),
        # Montenegrin adds ś and ź.
        ("С́еклић", "me", "Śeklić"),
        # Macedonian: the digraph system of passports.
        ("Ѓорѓи Ќиро Жаклина Чаловски", "mk", "Gjorgji Kjiro Zhaklina Chalovski"),
        ("Џафер Ѕвездан", "mk", "Dzhafer Dzvezdan"),
        # Greek: ELOT 743 with its digraph rules.
        ("Παπαδόπουλος", "el", "Papadopoulos"),
        ("Ευάγγελος", "el", "Evangelos"),
        ("Αύγουστος", "el", "Avgoustos"),
        ("Ευθύμιος", "el", "Efthymios"),
        ("Μπούρας", "el", "Bouras"),
        ("Λάμπρος", "el", "Lampros"),
        ("ΧΡΗΣΤΟΣ", "el", "CHRISTOS"),
        ("Αϊτή", "el", "Aiti"),
        # Latin passes unchanged.
        ("Dervishi Çela", "sq", "Dervishi Çela"),
    ],
)
def test_to_latin_follows_the_national_rules(name: str, language: str, latin: str) -> None:
    assert to_latin(name, language) == latin


def test_icao_fold_gives_the_machine_readable_form() -> None:
    assert icao_fold("Petrović") == "PETROVIC"
    assert icao_fold("Đorđe Šćekić") == "DORDE SCEKIC"
    assert icao_fold("Müller-Lüdenscheidt") == "MUELLER LUEDENSCHEIDT"
    assert icao_fold("Çela Hoxhë") == "CELA HOXHE"
    assert icao_fold("O'Neill") == "ONEILL"


def test_detect_script() -> None:
    assert detect_script("Петровић") is OriginalScript.CYRILLIC
    assert detect_script("Πέτροβιτς") is OriginalScript.GREEK
    assert detect_script("محمود") is OriginalScript.ARABIC
    assert detect_script("Petrović") is OriginalScript.LATIN


@pytest.mark.parametrize(
    "spellings",
    [
        # One person as written by Serbian, Greek, Macedonian, Albanian and Latin records.
        [("Петровић", "sr"), ("Πέτροβιτς", "el"), ("Петровиќ", "mk"), ("Petrović", "sq"),
         ("PETROVIC", "en"), ("Petroviq", "sq")],
        [("Пападопулос", "sr"), ("Παπαδόπουλος", "el"), ("ΠΑΠΑΔΟΠΟΥΛΟΣ", "el"),
         ("Papadopulos", "sq")],
        [("Ђорђи", "sr"), ("Ѓорѓи", "mk"), ("Gjorgji", "sq"), ("Djordji", "en")],
        [("Џафер", "mk"), ("Xhafer", "sq"), ("Džafer", "bs"), ("Τζαφέρ", "el")],
        [("Dervishi", "sq"), ("Ντερβίσι", "el"), ("Дервиши", "sr")],
        [("Arben", "sq"), ("Αρμπέν", "el"), ("Арбен", "mk")],
        [("Христос", "sr"), ("Χρήστος", "el")],
        [("Јанис", "sr"), ("Γιάννης", "el")],
        [("Драган", "sr"), ("Ντράγκαν", "el")],
        [("Al Hasan", "sq"), ("Αλ Χασάν", "el"), ("Ал Хасан", "sr")],
    ],
)  # fmt: skip
def test_match_keys_converge_across_scripts(spellings: list[tuple[str, str]]) -> None:
    keys = {match_key(name, language) for name, language in spellings}
    assert len(keys) == 1, keys


def test_match_keys_keep_different_names_apart() -> None:
    assert match_key("Петровић", "sr") != match_key("Петров", "sr")
    assert match_key("Марко", "sr") != match_key("Мирко", "sr")


def test_same_person_in_cyrillic_and_greek_gets_the_same_token() -> None:
    hasher = IdentityHasher(KEY)
    born = date(1984, 3, 15)
    serbian = hasher.token("Петровић", "Марко", born, "rs", language="sr")
    greek = hasher.token("Πέτροβιτς", "Μάρκο", born, "rs", language="el")
    latin = hasher.token("PETROVIC", "MARKO", born, "rs", language="en")
    assert serbian is not None
    assert serbian.startswith("it1.")
    assert serbian == greek == latin


def test_token_depends_on_every_part_and_on_the_key() -> None:
    hasher = IdentityHasher(KEY)
    base = hasher.token("Петровић", "Марко", date(1984, 3, 15), "rs", language="sr")
    assert base != hasher.token("Петровић", "Марко", date(1984, 3, 16), "rs", language="sr")
    assert base != hasher.token("Петровић", "Марко", date(1984, 3, 15), "me", language="sr")
    assert base != hasher.token("Петровић", "Мирко", date(1984, 3, 15), "rs", language="sr")
    other_key = IdentityHasher(b"x" * 32)
    assert base != other_key.token("Петровић", "Марко", date(1984, 3, 15), "rs", language="sr")


def test_no_token_without_all_four_parts() -> None:
    hasher = IdentityHasher(KEY)
    assert hasher.token("Петровић", None, date(1984, 3, 15), "rs", language="sr") is None
    assert hasher.token("Петровић", "Марко", None, "rs", language="sr") is None
    assert hasher.token("Петровић", "Марко", date(1984, 3, 15), None, language="sr") is None


def test_the_identity_key_is_required_secret_and_long_enough() -> None:
    with pytest.raises(AdapterError, match="BUS_IDENTITY_KEY is not set"):
        IdentityHasher.from_settings(AdapterSettings(identity_key=None))
    assert IdentityHasher.from_settings(AdapterSettings(identity_key=None), allow_dev_key=True)
    with pytest.raises(AdapterError, match="at least 32"):
        IdentityHasher(b"short")
    secret = "s3cr3t-" * 6
    settings = AdapterSettings(identity_key=secret)
    assert secret not in repr(settings)
    assert secret not in repr(IdentityHasher.from_settings(settings))


def test_identity_key_comes_from_bus_identity_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUS_IDENTITY_KEY", "e" * 40)
    key = AdapterSettings().identity_key
    assert key is not None
    assert key.get_secret_value() == "e" * 40


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Србија", "rs"), ("Srbija", "rs"), ("Serbia", "rs"), ("Σερβία", "rs"), ("SRB", "rs"),
        ("Северна Македонија", "mk"), ("Maqedonia e Veriut", "mk"), ("Βόρεια Μακεδονία", "mk"),
        ("Shqipëri", "al"), ("Shqipëria", "al"), ("SHQIPERI", "al"), ("Албанија", "al"),
        ("Ελλάδα", "gr"), ("ΕΛΛΆΔΑ", "gr"), ("Грчка", "gr"), ("Grčka", "gr"), ("Greqia", "gr"),
        ("Mali i Zi", "me"), ("Црна Гора", "me"), ("Μαυροβούνιο", "me"),
        ("Kosovë", "xk"), ("Косово", "xk"), ("XK", "xk"), ("BiH", "ba"),
        ("Босна и Херцеговина", "ba"),
        ("  сирија ", "sy"), ("fi", "fi"),
    ],
)  # fmt: skip
def test_country_names_in_any_language_and_script(name: str, code: str) -> None:
    assert country_code(name) == code


def test_unknown_country_names() -> None:
    assert country_code("Нарнија") is None
    assert country_code("ZZ") is None
    assert country_code("") is None
