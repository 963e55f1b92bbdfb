"""Tests of the derived-answer check: the final answer must be a result of the reasoning
(hf_patchdist.verifiers.math.derivation)."""

from __future__ import annotations

import pytest
from .verifier_cases import NATALIA

from hf_patchdist.verifiers import MathVerifier

# Each derivation below is followed by a line without numbers, so that only the rule it shows applies.
_DONE = "\nThat counts both months.\n#### 72"


@pytest.mark.parametrize(
    "candidate",
    [
        # The right side of an equation (and of a GSM8K annotation).
        "In May: 48 / 2 = 24 clips. In all: 48 + 24 = 72 clips." + _DONE,
        "In May: 48 / 2 = <<48/2=24>>24 clips. In all: <<48+24=72>>72 clips." + _DONE,
        # The value of the last arithmetic expression that is not an equation.
        "In May she sold 48 / 2 = 24 clips, so in all she sold 48 + 24 clips." + _DONE,
        # A value given to an unknown.
        "In May she sold 48 / 2 = 24 clips; with x the total, x - 24 = 48, so x = 72." + _DONE,
        "In May she sold 48 / 2 = 24 clips; with y the total, y / 2 - 12 = 24, so 72 = y." + _DONE,
        # A fractional result rounded to the whole answer; a result in hundredths (cents, percent).
        "Over 5 days she sold 361 / 5 = 72.2 clips a day on average, about the same each day." + _DONE,
        "Each clip costs 1.44 / 2 = 0.72 dollars, which we count in cents." + _DONE,
        # Stated in the last line of the reasoning, as a number the question does not give.
        "In May she sold 48 / 2 = 24 clips.\nSo she sold 72 clips in April and May.\n#### 72",
        # LaTeX: the box is the right side.
        "In May $48 \\div 2 = 24$, so in all $48 + 24 = \\boxed{72}$",
    ],
)
def test_derived_final_answers_pass(candidate):
    result = MathVerifier(min_length_ratio=0)(candidate, NATALIA["answer"], question=NATALIA["question"])
    assert result.passed, (result.reason, result.detail)


@pytest.mark.parametrize(
    "candidate",
    [
        "In May she sold 48 / 2 = 24 clips, so she sold 24 + 24 clips.\n#### 72",
        "In May she sold 48 / 2 = 24 clips.\nShe sold 48 clips in April.\n#### 72",
        "In May she sold 48 / 2 = 24 clips.\nThe answer = 72",
        "In May she sold 48 / 2 = 24 clips.\nTotal: 24 clips.\n\\boxed{72}",
    ],
)
def test_underived_final_answers_fail(candidate):
    result = MathVerifier(min_length_ratio=0)(candidate, NATALIA["answer"], question=NATALIA["question"])
    assert result.reason == "answer_not_derived", (result.reason, result.detail)
    assert MathVerifier(min_length_ratio=0, require_derived_answer=False)(candidate, NATALIA["answer"]).passed
