"""Numbers in arguments, however they are spelt: the reading numeric rules are matched on.

A server that coerces its arguments (most do: pydantic in lax mode, JavaScript's ``Number``,
PHP) runs ``{"amount": "500000"}`` as the number 500000, so a rule written for numbers must see
that string as the number too, and ``1e16``, ``"1e16"``, ``" +500_000 "`` and ``"0x7a120"`` as
the large numbers they are. :func:`read_number` gives that reading; :func:`plain_digits` writes
a number as the plain decimal digits a regex such as ``^\\d{6,}`` is meant for.

Thousands separators (``,``) are dropped, so ``"1,000"`` reads as 1000, never as 1.0: of the
readings a server might make, the one of larger magnitude, which is the cautious one for the
rules people write (``gt``: refuse big amounts; ``lt``: allow small ones).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["plain_digits", "read_number"]

# Longer strings are not read as numbers: Decimal of a megabyte of digits costs real time.
_LONGEST = 400
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|[+-]?(?:inf|infinity)", re.IGNORECASE)
_BASED = re.compile(r"([+-]?)0([xob])([0-9a-f]+)", re.IGNORECASE)
_BASES = {"x": 16, "o": 8, "b": 2}
# Exponents beyond this are written as a 1 followed by this many zeros: still "a very long
# number" to a digit-count regex, without building a string of a billion digits.
_WIDEST = 4000


def read_number(value: object, normalized: str | None = None) -> Decimal | None:
    """``value`` as a number, or ``None`` if it is not one and does not spell one.

    Args:
        value: A JSON value; ``true`` and ``false`` are not numbers.
        normalized: For a string, its :func:`~daemon.normalize.normalize` form if the caller
            has it (fullwidth digits are then plain digits).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return (
            None if value != value else Decimal(repr(value)) if abs(value) != float("inf") else Decimal(value)
        )
    if not isinstance(value, str):
        return None
    text = normalized if normalized is not None else value
    if len(text) > _LONGEST:
        return None
    text = text.strip().replace("_", "").replace(",", "")
    if _DECIMAL.fullmatch(text):
        try:
            return Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
            return None
    m = _BASED.fullmatch(text)
    if m is not None:
        try:
            number = int(m[3], _BASES[m[2].lower()])
        except ValueError:  # digits outside the base, e.g. 0b12
            return None
        return Decimal(-number if m[1] == "-" else number)
    return None


def plain_digits(number: Decimal) -> str:
    """``number`` in plain decimal digits, never in exponent form: 1e16 reads 10000000000000000."""
    if not number.is_finite():
        return "inf" if number > 0 else "-inf"
    if number == number.to_integral_value():
        number = number.quantize(Decimal(1)) if number.adjusted() < 28 else number
        if number.adjusted() > _WIDEST:
            return ("-" if number < 0 else "") + "1" + "0" * _WIDEST
        return format(number, "f").split(".")[0]
    if number.adjusted() < -_WIDEST:
        return "0." + "0" * _WIDEST + "1"
    return format(number, "f")
