"""Tests of the multiple-choice gate (hf_patchdist.verifiers.choice)."""

from __future__ import annotations

import pytest

from hf_patchdist.verifiers import ChoiceVerifier


@pytest.mark.parametrize(
    ("candidate", "reference", "passed", "reason"),
    [
        ("Water boils at 100 C at sea level.\nThe answer is (B).", "B", True, ""),
        ("Answer: C", "#### B", False, "wrong_final_answer"),
        ("Only B fits.\n#### B", "The correct answer is B.", True, ""),
        ("\\boxed{\\text{B}}", "(B)", True, ""),
        ("The correct option is D.\nAnything after it is trimmed.", "D", True, ""),
        ("I think it is b, probably.", "B", False, "no_final_answer"),
        ("The answer is F.", "B", False, "no_final_answer"),
    ],
)
def test_choice_verifier(candidate, reference, passed, reason):
    result = ChoiceVerifier()(candidate, reference)
    assert (result.passed, result.reason) == (passed, reason)


def test_choice_verifier_letters_and_trimming():
    verifier = ChoiceVerifier(letters="abcdef")
    assert verifier.letters == "ABCDEF"
    assert verifier("The answer is F.", "F").passed
    result = ChoiceVerifier()("Because of gravity.\n#### C\nHere is why: nothing.", "C")
    assert result.passed and result.text == "Because of gravity.\n#### C"
    assert ChoiceVerifier().check_reference("no letter here") == "reference_without_final_answer"
