"""Tests of the exact-match, regex and callable gates (hf_patchdist.verifiers.simple)."""

from __future__ import annotations

import re

import pytest
from .verifier_cases import ends_with_reference

from hf_patchdist.verifiers import CallableVerifier, ExactMatchVerifier, RegexVerifier, VerificationResult, get_verifier


@pytest.mark.parametrize(
    ("candidate", "reference", "passed"),
    [
        ("France's capital sits on the Seine.\nThe answer is Paris.", "#### paris", True),
        ("It is\nthe  PARIS!", "Paris", True),
        ("Answer: London", "Paris", False),
        ("The answer is the Eiffel Tower!\nbye", "eiffel tower", True),
        ("#### New York City", "The answer is New York.", False),
    ],
)
def test_exact_match_verifier(candidate, reference, passed):
    result = ExactMatchVerifier()(candidate, reference)
    assert result.passed is passed
    if not passed:
        assert result.reason == "wrong_final_answer"


def test_regex_verifier():
    verifier = RegexVerifier(r"Answer:\s*(\w+)", flags=re.IGNORECASE)
    assert verifier("Blue light scatters most.\nanswer: BLUE", "Answer: blue").passed
    assert verifier("Answer: red, then Answer: blue", "Answer: blue").passed  # the last match counts
    assert verifier("Answer: blue, then Answer: red", "Answer: blue").reason == "wrong_final_answer"
    assert verifier("no match", "Answer: blue").reason == "no_final_answer"
    assert verifier.check_reference("no match") == "reference_without_final_answer"
    assert verifier.final_answer_end("Answer: blue\nmore") is None
    whole = RegexVerifier(r"\d+")
    assert whole("3 then 42", "42").passed


def _with_reason(candidate: str, reference: str) -> tuple[bool, str]:
    return candidate == reference, "different_text"


def _with_question(candidate: str, reference: str, question: str | None = None) -> VerificationResult:
    ok = question is not None and reference in question
    return VerificationResult(ok, "" if ok else "not_in_question", candidate.upper())


def test_callable_verifier():
    verifier = get_verifier(ends_with_reference)
    assert isinstance(verifier, CallableVerifier)
    assert verifier("It is green", "GREEN").passed
    assert verifier("It is blue", "green").reason == "rejected"
    assert get_verifier(_with_reason)("a", "b").reason == "different_text"
    question_aware = get_verifier(_with_question)
    result = question_aware("x", "green", question="Is grass green?")
    assert result.passed and result.text == "X"
    assert question_aware("x", "green", question="Is the sky blue?").reason == "not_in_question"
    # Generic checks still run before the callable.
    assert verifier("I rewrote it: green", "green").reason == "mentions_rewriting"


def test_callable_verifier_rejects_bad_return_values():
    with pytest.raises(TypeError):
        get_verifier(lambda c, r: "yes")("a", "b")


def test_to_dict_of_a_callable():
    config = get_verifier(ends_with_reference).to_dict()
    assert config["callable"] == "verifiers.verifier_cases:ends_with_reference"
    lam = get_verifier(lambda c, r: True)
    assert lam.to_dict()["callable"] is None
    with pytest.raises(ValueError, match="not importable"):
        get_verifier(lam.to_dict())
