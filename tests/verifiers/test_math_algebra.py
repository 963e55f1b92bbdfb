"""Tests of the algebra check: values given to one-letter unknowns must solve the text's own equations
(hf_patchdist.verifiers.math.algebra)."""

from __future__ import annotations

import pytest

from hf_patchdist.verifiers import MathVerifier
from hf_patchdist.verifiers.math.algebra import first_unsolved_algebra


@pytest.mark.parametrize(
    "text",
    [
        "Let x be the cost. x + 2x = 30\n3x = 30\nx = 30/3 = 10",
        "2(x + 1) = 10, so x = 4.",
        "x/2 = 5 so x = 10",
        "3x+7=27\nx = 20/3 = 6.67",  # rounded to the stated decimals, within the tolerance
        "a + b = 10, a = 4, b = 6",  # "a" is the article here: the run is cut, nothing is judged
        "5 x 3 = 15 so x = 2",  # "x" between numbers is a multiplication sign, not the unknown
        "Let x + 5 = 12 be the equation.",  # an unknown without a value is not judged
        "If y = 2x and x = 3, then y = 6.",
    ],
)
def test_solved_or_unjudged_algebra_passes(text):
    assert first_unsolved_algebra(text) is None


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("3x + 7 = 27, so x = 19.", "3 x + 7 = 27 does not hold for x = 19"),
        ("Let m be the months: 4m = 20\nm = 6", "4 m = 20 does not hold for m = 6"),
        ("If y = 2x and x = 3, then y = 7.", "y = 2 x does not hold for x = 3, y = 7"),
    ],
)
def test_a_value_that_does_not_solve_the_equation_fails(text, shown):
    assert first_unsolved_algebra(text) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # The trained rewriter's best-of-8 with the expert's equations shown: "x = 7 + x" four times, then "#### 7".
        ("x = 7 + x\nx = 7 + x\n#### 7", "x = 7 + x holds for no value of x"),
        ("Let n be the boxes: 2n + 3 = 2n + 5.", "2 n + 3 = 2 n + 5 holds for no value of n"),
    ],
)
def test_an_equation_no_value_can_solve_fails(text, shown):
    assert first_unsolved_algebra(text) == shown


# GSM8K train row 6368: its sides differ by about 360,000 at any A, which a relative tolerance would call constant.
@pytest.mark.parametrize("text", ["x + x = 2x", "Let x + 5 = 12 be the equation.", "y = 3y - 2y", "6A - $110,000 = $250,000."])
def test_an_identity_or_a_solvable_equation_without_a_value_is_not_judged(text):
    assert first_unsolved_algebra(text) is None


def test_an_unknown_given_two_values_fails():
    # An accepted RFT rewrite (GRPO gate, gate 6): "Sam ran X = 6 / 3 = 2 miles / He walked X = 2 * 6 = 12 miles".
    assert first_unsolved_algebra("Sam ran X = 6 / 3 = 2 miles\nHe walked X = 2 * 6 = 12 miles") == "X is given two values, 2 and 12"
    assert first_unsolved_algebra("x + 1 = 5, so x = 4.\nLater x = 9 apples.") == "x is given two values, 4 and 9"
    assert first_unsolved_algebra("x = 8 / 2 = 4 and so x = 4.0") is None


def test_the_gate_rejects_an_unsolved_equation_whose_unknown_carries_the_answer():
    # Before gate 6 "x = 72" counted as the derivation of the final answer and the algebra was never read.
    question = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"
    reference = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
    leak = "In May she sold 48 / 2 = 24 clips.\nLet x be the total: x - 48 = 30, so x = 72 clips.\n#### 72"
    result = MathVerifier()(leak, reference, question=question)
    assert result.reason == "wrong_equation"
    assert "x - 48 = 30" in result.detail
    honest = "In May she sold 48 / 2 = 24 clips.\nLet x be the total: x - 48 = 24, so x = 72 clips.\n#### 72"
    assert MathVerifier()(honest, reference, question=question).passed
