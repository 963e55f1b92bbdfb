"""Tests of math final answers: extraction and equivalence (hf_patchdist.verifiers.math.answers)."""

from __future__ import annotations

import threading

import pytest
from .verifier_cases import NATALIA, NATALIA_REWRITE

from hf_patchdist.verifiers import MathVerifier, extract_math_answer, math_answers_equal


@pytest.mark.parametrize(
    "answer", ["72", "72.0", "\\frac{144}{2}", "$72", "72 dollars", "\\boxed{72}", "$72.00", "72."]
)
def test_equivalent_answers(answer):
    assert math_answers_equal(answer, "72")
    assert math_answers_equal("72", answer)


@pytest.mark.parametrize(
    ("a", "b"), [("1,000", "1000"), ("50%", "50"), ("50%", "0.5"), ("0.5", "1/2"), ("-3", "-3.0")]
)
def test_more_equivalent_answers(a, b):
    assert math_answers_equal(a, b)


@pytest.mark.parametrize(("a", "b"), [("7", "72"), ("-72", "72"), ("72", ""), ("720", "72"), ("\\frac{1}{3}", "0.3")])
def test_different_answers(a, b):
    assert not math_answers_equal(a, b)


def test_candidate_answer_forms_against_gsm8k_reference():
    for final in ["#### 72.0", "#### \\frac{144}{2}", "#### $72"]:
        candidate = NATALIA_REWRITE.replace("#### 72", final)
        assert MathVerifier()(candidate, NATALIA["answer"]).passed, final
    # Another final-line format is the same answer, and a target in another format than the data set's (gate 9).
    for final in ["The answer is $72.", "\\boxed{72}"]:
        candidate = NATALIA_REWRITE.replace("#### 72", final)
        assert MathVerifier(match_reference_format=False)(candidate, NATALIA["answer"]).passed, final
        assert MathVerifier()(candidate, NATALIA["answer"]).reason == "final_answer_format", final


def test_final_answer_format_follows_the_expert_answer():
    boxed_reference = "48 / 2 = 24 and 48 + 24 = 72, so \\boxed{72}"
    candidate = "In May 48 / 2 = 24 clips, in all 48 + 24 = 72.\nThe answer is 72."
    assert MathVerifier()(candidate, boxed_reference).reason == "final_answer_format"
    assert MathVerifier()(candidate.replace("The answer is 72.", "So \\boxed{72}"), boxed_reference).passed
    assert MathVerifier()(candidate, "In May 48 / 2 = 24 clips, in all 48 + 24 = 72.\nThe answer is 72.").passed


def test_math_verify_works_outside_the_main_thread():
    results = []
    thread = threading.Thread(target=lambda: results.append(math_answers_equal("\\frac{144}{2}", "72")))
    thread.start()
    thread.join()
    assert results == [True]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (NATALIA["answer"], "72"),
        ("So the total is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("First \\boxed{3}, then \\boxed{4}", "4"),
        ("Hence the answer is 1,000 dollars.", "1,000"),
        ("She has 3 apples and 4 pears, 7 pieces.", "7"),
        ("#### Step 1\nThe answer is 5.", "5"),
        ("no numbers", None),
        ("", None),
    ],
)
def test_extract_math_answer(text, answer):
    assert extract_math_answer(text) == answer
