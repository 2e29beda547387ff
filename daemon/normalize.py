"""The one text form every policy match is made on.

An agent that wants a dangerous call to slip past a keyword can spell the keyword in ways a
human reads the same but a naive ``in`` does not: ``DELETE``, fullwidth ``ｄｅｌｅｔｅ``,
``de<ZERO WIDTH SPACE>lete``, ``d<CYRILLIC SMALL LETTER IE>lete``, ``del<SOFT HYPHEN>ete``.
:func:`normalize` maps all of those to ``delete``. The steps, in order:

1. Unicode NFKC (fullwidth, ligatures, compatibility forms).
2. Removal of invisible characters: every code point of general category ``Cf`` and the other
   default-ignorable code points (Hangul fillers, variation selectors, tag characters...).
3. ``str.casefold()``.
4. Removal of accents: NFKD, then every combining mark (category ``Mn``) goes, so ``délete``,
   ``dęlete`` and ``d<COMBINING ACUTE>elete`` read ``delete``.
5. A small confusables fold that maps common Cyrillic, Greek, Armenian and Latin look-alikes to
   the ASCII letter they imitate (``đ``, ``ł`` and ``ø`` among them).
6. NFKC again, since steps 2 to 5 can leave sequences that NFKC would compose.

Pure-ASCII text, by far the common case, only needs ``str.lower()``: NFKC leaves ASCII alone,
ASCII holds no invisible or confusable characters, and ``casefold`` equals ``lower`` on it.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["json_equal", "name_words", "normalize", "normalize_json", "normalize_name"]

# Hard-coded rather than derived from ``unicodedata`` at import: scanning all 1.1 million code
# points costs a noticeable fraction of a second of start-up. The test suite checks this class
# against the running interpreter's Unicode database, so a newer Python that adds a Cf code point
# fails a test instead of opening a hole. Ranges cover Unicode 15.1; unassigned code points
# inside default-ignorable blocks are included on purpose, so future assignments stay invisible.
_INVISIBLE = re.compile(
    "["
    "\u00ad"  # soft hyphen
    "\u034f"  # combining grapheme joiner
    "\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"  # Arabic/Syriac format characters
    "\u115f\u1160"  # Hangul choseong/jungseong fillers
    "\u17b4\u17b5"  # Khmer inherent vowels
    "\u180b-\u180f"  # Mongolian free variation selectors and vowel separator
    "\u200b-\u200f"  # zero-width space, (non-)joiner, direction marks
    "\u202a-\u202e"  # bidirectional embeddings and overrides
    "\u2060-\u206f"  # word joiner, invisible operators, bidi isolates, deprecated formats
    "\u3164"  # Hangul filler
    "\ufe00-\ufe0f"  # variation selectors
    "\ufeff"  # zero-width no-break space (BOM)
    "\uffa0"  # halfwidth Hangul filler
    "\ufff0-\ufffb"  # unassigned ignorables and interlinear annotation characters
    "\U000110bd\U000110cd"  # Kaithi number signs
    "\U00013430-\U0001343f"  # Egyptian hieroglyph format controls
    "\U0001bca0-\U0001bca3"  # shorthand format controls
    "\U0001d173-\U0001d17a"  # musical symbol format controls
    "\U000e0000-\U000e0fff"  # tag characters, variation selectors supplement, reserved
    "]+"
)

# Look-alikes of Latin letters, keyed by the lower-case form because the fold runs after
# casefold (capitals such as Cyrillic "Е" or Greek "Ρ" reach it already lower-cased). Each maps
# to the ASCII letter a reader would take it for; a name written in Cyrillic or Greek is rarely
# a tool name, and folding one more spelling into a keyword only ever asks a human more often.
_CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "а": "a",
        "в": "b",
        "ԁ": "d",
        "е": "e",
        "һ": "h",
        "н": "h",
        "і": "i",
        "ј": "j",
        "к": "k",
        "ӏ": "l",
        "м": "m",
        "о": "o",
        "р": "p",
        "ԛ": "q",
        "ѕ": "s",
        "т": "t",
        "у": "y",
        "ѵ": "v",
        "ԝ": "w",
        "х": "x",
        "с": "c",
        # Greek
        "α": "a",
        "β": "b",
        "ε": "e",
        "η": "n",
        "ι": "i",
        "κ": "k",
        "μ": "m",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ω": "w",
        "ϲ": "c",
        "ϳ": "j",
        # Armenian
        "օ": "o",
        "ս": "u",
        "ց": "g",
        # Latin look-alikes outside ASCII
        "ı": "i",
        "ɑ": "a",
        "ɡ": "g",
        "ɩ": "i",
        "ʏ": "y",
        # Latin letters with a stroke or hook, which have no decomposition to strip
        "đ": "d",
        "ð": "d",
        "ɗ": "d",
        "ƀ": "b",
        "ɓ": "b",
        "ħ": "h",
        "ɨ": "i",
        "ł": "l",
        "ƚ": "l",
        "ø": "o",
        "ŧ": "t",
        "ƶ": "z",
    }
)


@lru_cache(maxsize=1)
def _marks() -> re.Pattern[str]:
    """Combining marks (category ``Mn``), built on the first non-ASCII text (about 20 ms).

    Every ``Mn`` code point lies below U+20000 except the variation selectors supplement, which
    ``_INVISIBLE`` removes already; the tests check both against the running interpreter.
    """
    ranges: list[str] = []
    start = -1
    for code in range(0x20001):
        if code < 0x20000 and unicodedata.category(chr(code)) == "Mn":
            start = code if start < 0 else start
        elif start >= 0:
            ranges.append(f"{chr(start)}-{chr(code - 1)}")
            start = -1
    return re.compile("[" + "".join(ranges) + "]+")


def normalize(text: str) -> str:
    """Return the form of ``text`` that policy patterns and values are compared in.

    Args:
        text: A tool name, argument value or configured pattern.

    Returns:
        ``text`` after NFKC, removal of invisible characters, case folding and the confusables
        fold (see the module docstring). Idempotent: ``normalize(normalize(s)) == normalize(s)``.
    """
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    # Accents go before the look-alike fold, so a Greek alpha with a breathing mark folds too.
    text = _marks().sub("", unicodedata.normalize("NFKD", text.casefold()))
    return unicodedata.normalize("NFKC", text.translate(_CONFUSABLES))


#: :func:`normalize` with a cache, for tool names and argument keys: a session calls the same few
#: tools again and again. Not for argument values, which can be megabytes and rarely repeat.
normalize_name = lru_cache(maxsize=4096)(normalize)


def _camel_cut(text: str) -> str:
    """``text`` with ``_`` at each camelCase boundary: ``getFileInfo`` -> ``get_File_Info``,
    ``HTTPGet`` -> ``HTTP_Get``, ``v2Api`` -> ``v2_Api``."""
    out: list[str] = []
    last = len(text) - 1
    for i, char in enumerate(text):
        if i and char.isupper():
            before = text[i - 1]
            if (
                before.islower()
                or before.isdigit()
                or (before.isupper() and i < last and text[i + 1].islower())
            ):
                out.append("_")
        out.append(char)
    return "".join(out)


_SEPARATORS = re.compile(r"[\W_]+")


@lru_cache(maxsize=4096)
def name_words(name: str) -> str:
    """A tool name as its words joined by ``_``, in :func:`normalize` form.

    Words are cut at every run of characters that are not letters or digits (``_ - . / :``,
    spaces) and at camelCase boundaries, which are found before case folding. So ``get-sum``,
    ``getSum``, ``get.sum``, ``Get_Sum`` and ``GET__SUM`` all read ``get_sum``: the one spelling
    that allow prefixes such as ``get_`` and block keywords are compared with.
    """
    if not name.isascii():
        name = _INVISIBLE.sub("", unicodedata.normalize("NFKC", name))
    words = _SEPARATORS.split(normalize(_camel_cut(name)))
    return "_".join(word for word in words if word)


def normalize_json(value: object) -> object:
    """``value`` with every string in it, object keys included, in :func:`normalize` form."""
    if isinstance(value, str):
        return normalize(value)
    if isinstance(value, list):
        return [normalize_json(v) for v in value]
    if isinstance(value, dict):
        return {normalize(k): normalize_json(v) for k, v in value.items() if isinstance(k, str)}
    return value


def json_equal(actual: object, expected: object) -> bool:
    """Whether ``actual`` equals ``expected`` (already :func:`normalize_json`-ed) as JSON values.

    Strings compare in :func:`normalize` form. Unlike Python's ``==``, ``true`` is not ``1`` and
    ``1`` is not ``true``; ``1`` and ``1.0`` are equal, as JSON does not tell them apart.
    """
    if isinstance(expected, str):
        return isinstance(actual, str) and (actual == expected or normalize(actual) == expected)
    if isinstance(expected, bool) or expected is None:
        return actual is expected
    if isinstance(expected, int | float):
        return isinstance(actual, int | float) and not isinstance(actual, bool) and actual == expected
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(map(json_equal, actual, expected))
        )
    if isinstance(expected, dict) and isinstance(actual, dict):
        folded = {normalize(k): v for k, v in actual.items() if isinstance(k, str)}
        return folded.keys() == expected.keys() and all(json_equal(folded[k], v) for k, v in expected.items())
    return False
