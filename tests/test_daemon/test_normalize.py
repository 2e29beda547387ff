"""The match form: NFKC, invisible characters removed, case folded, look-alikes folded."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.normalize import json_equal, normalize, normalize_json, normalize_name


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("DELETE_user", "delete_user"),
        ("ｄｅｌｅｔｅ_user", "delete_user"),  # fullwidth
        ("de\u200blete_user", "delete_user"),  # zero-width space
        ("d\u0435lete_user", "delete_user"),  # Cyrillic small ie
        ("del\u00adete", "delete"),  # soft hyphen
        ("DEL\u0415TE", "delete"),  # Cyrillic capital IE, folded after casefold
        ("d\u200de\u2060l\ufeffe\u200ct\u200fe", "delete"),  # joiners, word joiner, BOM, marks
        ("del\U000e0065ete", "delete"),  # a tag character
        ("dele\ufe0fte", "delete"),  # a variation selector
        ("\u0440\u0430\u0443", "pay"),  # Cyrillic er, a, u
        ("\u03a1\u0391\u03a5", "pau"),  # Greek capitals fold to their lower-case look-alikes
        ("ｒｅｆｕｎｄ\u3164", "refund"),  # fullwidth plus a Hangul filler
        ("\u0455\u0435nd", "send"),  # Cyrillic dze and ie
        ("d\u00e9lete_user", "delete_user"),  # e with acute, precomposed
        ("de\u0301lete_user", "delete_user"),  # a combining acute accent
        ("d\u0119l\u00eat\u00eb", "delete"),  # ogonek, circumflex, diaeresis
        ("\u0111elete", "delete"),  # d with stroke (no decomposition)
        ("DR\u00d8P", "drop"),  # O with stroke
        ("r\u00e9fund", "refund"),
        ("TR\u00c0NSFER", "transfer"),
        ("\u1f00", "a"),  # Greek alpha with psili: the accent goes, then the look-alike fold
    ],
)
def test_evasive_spellings_fold_to_the_keyword(spelling: str, expected: str) -> None:
    """Every evasive spelling of a keyword normalizes to the plain ASCII keyword."""
    assert normalize(spelling) == expected


def test_ascii_is_only_lower_cased() -> None:
    """Pure ASCII keeps every character and only loses its capitals."""
    text = "Get_Balance-V2 (x=1; y='A')\t"
    assert normalize(text) == text.lower()


def test_every_format_character_is_removed() -> None:
    """Every code point of category Cf in this Python's Unicode database disappears."""
    cf = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
    assert len(cf) > 150
    survivors = [f"U+{ord(c):04X}" for c in cf if normalize(f"a{c}b") != "ab"]
    assert survivors == []


@pytest.mark.parametrize(
    "code_point",
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, *range(0x180B, 0x1810), 0x3164, 0xFFA0]
    + list(range(0xFE00, 0xFE10))
    + [0xE0100, 0xE0150, 0xE01EF, 0xE0000, 0xE0001, 0xE0041, 0xE007F],
)
def test_default_ignorables_are_removed(code_point: int) -> None:
    """The default-ignorable code points named in the design are removed too."""
    assert normalize(f"dr{chr(code_point)}op") == "drop"


def test_every_combining_mark_is_removed() -> None:
    """No code point of category Mn in this Python's Unicode database survives (U+0345 casefolds to
    a Greek iota, and so reads as an i)."""
    mn = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Mn"]
    assert len(mn) > 1500
    survivors = [f"U+{ord(c):04X}" for c in mn if normalize(f"a{c}b") not in ("ab", "aib")]
    assert survivors == []


def test_other_scripts_survive() -> None:
    """Letters without a Latin look-alike are kept, so non-Latin names stay distinct."""
    assert normalize("日本語") == "日本語"
    assert normalize("Straße") == "strasse"  # casefold, not lower


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    """Normalizing twice gives the same as normalizing once."""
    once = normalize(text)
    assert normalize(once) == once


def test_normalize_name_is_the_cached_normalize() -> None:
    """The cached variant for names agrees with the plain function."""
    for name in ("DELETE", "ｄｅｌｅｔｅ", "de\u200blete"):
        assert normalize_name(name) == normalize(name)


def test_json_equal_compares_like_json() -> None:
    """Strings compare normalized, booleans are not numbers, nested values compare deeply."""
    assert json_equal("ＤＥＬＥＴＥ", normalize_json("delete"))
    assert json_equal(1.0, 1)
    assert not json_equal(True, 1)
    assert not json_equal(1, True)
    assert not json_equal(0, None)
    assert json_equal({"A": [1, "X"]}, normalize_json({"a": [1, "x"]}))
    assert not json_equal({"a": [1, "x"]}, normalize_json({"a": [1, "x", 2]}))
    assert not json_equal("1", 1)
