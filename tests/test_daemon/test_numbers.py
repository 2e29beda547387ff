"""Numeric rules see numbers however they are spelt: JSON numbers, and strings a server would coerce."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from daemon.config import PolicyFile
from daemon.numbers import plain_digits, read_number
from daemon.policy import Policy, compile_policy


def one_rule(condition: dict[str, Any], action: str = "deny") -> Policy:
    cfg = {"global": {"default_action": "allow", "rules": [{"args": [condition], "action": action}]}}
    return compile_policy(PolicyFile.model_validate(cfg), None)


BIG = [
    500000,
    500000.0,
    5e5,
    "500000",
    " 500000 ",
    "+500000",
    "500_000",
    "500,000",
    "5e5",
    "5E+5",
    "0x7a120",
    "\uff15\uff10\uff10\uff10\uff10\uff10",
    "500000.00",
    "Infinity",
    1e300,
    "1e999",
]
SMALL = [999, 1000, "999", "1000", "1,000", "0x3e8", "-500000", "nope", "", True, None, {"amount": 5}]


@pytest.mark.parametrize("amount", BIG)
def test_gt_sees_every_spelling_of_a_big_number(amount: object) -> None:
    """`amount > 1000` denies 500000 as a number, as a numeric string, and in exponent, hex or fullwidth."""
    verdict = one_rule({"key": "amount", "gt": 1000}).decide("refund", {"amount": amount})
    assert verdict.action == "deny"


@pytest.mark.parametrize("amount", SMALL)
def test_gt_lets_small_and_non_numbers_pass(amount: object) -> None:
    """1000 and below, booleans, null, objects and text that is no number do not hold."""
    assert one_rule({"key": "amount", "gt": 1000}).decide("refund", {"amount": amount}).action == "allow"


def test_each_comparison() -> None:
    """gt, gte, lt and lte at the boundary, with the bound given as an int or a float."""
    for op, held in (("gt", [1001]), ("gte", [1000, 1001]), ("lt", [999]), ("lte", [999, 1000])):
        for bound in (1000, 1000.0):
            p = one_rule({"key": "n", op: bound})
            assert [n for n in (999, 1000, 1001) if p.decide("t", {"n": str(n)}).action == "deny"] == held


def test_lt_allow_rule_reads_separators_as_thousands() -> None:
    """An allow rule for small amounts allows "50", not "1,000" (read as 1000, never as 1.0)."""
    p = compile_policy(
        PolicyFile.model_validate(
            {
                "global": {
                    "default_action": "approve",
                    "rules": [{"args": [{"key": "amount", "lt": 100}], "action": "allow"}],
                }
            }
        ),
        None,
    )
    assert p.decide("pay", {"amount": "50"}).action == "allow"
    assert p.decide("pay", {"amount": "1,000"}).action == "approve"
    assert p.decide("pay", {"amount": "NaN"}).action == "approve"
    assert p.decide("pay", {"amount": "fifty"}).action == "approve"


@pytest.mark.parametrize("amount", ["1e16", "+500000", " 500000", "500_000", "0x7a120", "5e5"])
def test_regex_rule_sees_numeric_strings_as_their_digits(amount: str) -> None:
    """The README's `^\\d{6,}` rule denies a string a lax server would run as a big number."""
    p = one_rule({"key": "amount", "regex": "^\\d{6,}"})
    assert p.decide("refund_payment", {"amount": amount}).action == "deny"
    assert p.decide("refund_payment", {"amount": "12345"}).action == "allow"


def test_bad_bounds_are_refused() -> None:
    """A bound must be a number (strictly: not a string, not a boolean) and finite."""
    for bad in ("1000", True, None):
        with pytest.raises(ValueError, match="gt"):
            PolicyFile.model_validate(
                {"global": {"rules": [{"args": [{"key": "a", "gt": bad}], "action": "deny"}]}}
            )


def test_read_number_and_plain_digits() -> None:
    """The reading itself: exact decimals, no exponent form in the digits."""
    assert read_number("1e16") == Decimal(10**16)
    assert plain_digits(Decimal("1e16")) == "1" + "0" * 16
    assert plain_digits(Decimal("1e99999")).startswith("1000")
    assert read_number("0b12") is None
    assert read_number(False) is None
    assert read_number("9" * 401) is None
