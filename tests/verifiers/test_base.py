"""Tests of the generic checks that every verifier runs (hf_patchdist.verifiers.base)."""

from __future__ import annotations

import pytest
from .verifier_cases import GSM8K_ROWS, INSTRUCTION, MADDIE_STEPS, NATALIA, NATALIA_REWRITE, TRAIN_800

from hf_patchdist.verifiers import GRPO_GATE, MathVerifier, get_verifier

# ---------------------------------------------------------------------------------------------
# Generic checks: empty, truncated, trailing text, the reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"candidate": "", "truncated": True}, "empty"),
        ({"candidate": "   \n\t "}, "empty"),
        ({"candidate": None}, "empty"),
        ({"candidate": NATALIA_REWRITE, "truncated": True}, "truncated"),
        ({"candidate": "I rewrote it: 48 / 2 = 24 and 48 + 24 = 72", "truncated": True}, "truncated"),
    ],
)
def test_empty_and_truncated(kwargs, reason):
    candidate = kwargs.pop("candidate")
    result = MathVerifier()(candidate, NATALIA["answer"], **kwargs)
    assert not result.passed
    assert result.reason == reason


def test_generic_checks_run_in_order():
    tail = "\nI kept every step correct, keep the final answer, and end with a line. The original solution agrees."
    # Strict mode fails the trailing text first; default mode trims it, so it cannot decide the verdict.
    assert MathVerifier(strict=True)(NATALIA_REWRITE + tail, NATALIA["answer"], instruction=INSTRUCTION).reason == "trailing_text"
    assert MathVerifier()(NATALIA_REWRITE + tail, NATALIA["answer"], instruction=INSTRUCTION).passed
    lines = NATALIA_REWRITE.splitlines()
    inside = "\n".join([*lines[:-1], tail.strip(), lines[-1]])
    verifier = MathVerifier(strict=True)
    assert verifier(inside, NATALIA["answer"], instruction=INSTRUCTION).reason == "mentions_rewriting"
    inside = inside.replace(" The original solution agrees.", "")
    assert verifier(inside, NATALIA["answer"], instruction=INSTRUCTION).reason == "echoes_instruction"


def test_trailing_text_is_trimmed_by_default_and_rejected_in_strict_mode():
    candidate = NATALIA_REWRITE + "\nHope this helps! Let me know if you need anything else."
    result = MathVerifier()(candidate, NATALIA["answer"], question=NATALIA["question"])
    assert result.passed
    assert result.text == NATALIA_REWRITE
    strict = MathVerifier(strict=True)(candidate, NATALIA["answer"], question=NATALIA["question"])
    assert strict.reason == "trailing_text"
    assert "Hope this helps" in strict.detail
    # Trailing whitespace is not trailing text.
    assert MathVerifier(strict=True)(NATALIA_REWRITE + "\n\n", NATALIA["answer"]).passed


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        (None, "invalid_reference"),
        (72, "invalid_reference"),
        ("", "reference_without_final_answer"),
        ("no digits at all", "reference_without_final_answer"),
        (NATALIA["answer"], None),
    ],
)
def test_check_reference(reference, reason):
    verifier = MathVerifier()
    assert verifier.check_reference(reference) == reason
    result = verifier(NATALIA_REWRITE, reference)
    assert result.passed is (reason is None)
    if reason is not None:
        assert result.reason == reason


# ---------------------------------------------------------------------------------------------
# Generic checks: the instruction, the rewriting, the question, the expert answer, repeats
# ---------------------------------------------------------------------------------------------


def test_echoed_instruction_fails():
    candidate = (
        NATALIA_REWRITE.replace("#### 72", "")
        + "I will keep every step correct, keep the final answer, and end with a line.\n#### 72"
    )
    result = MathVerifier()(candidate, NATALIA["answer"], question=NATALIA["question"], instruction=INSTRUCTION)
    assert result.reason == "echoes_instruction"
    assert "keep every step correct keep the final answer" in result.detail
    # Without the instruction there is nothing to compare with.
    assert MathVerifier()(candidate, NATALIA["answer"], question=NATALIA["question"]).passed


def test_short_overlap_with_instruction_is_not_an_echo():
    # Seven consecutive instruction words ("keep every step correct keep the final") are allowed.
    candidate = NATALIA_REWRITE.replace("#### 72", "We keep every step correct; keep the final count.\n#### 72")
    assert MathVerifier()(candidate, NATALIA["answer"], instruction=INSTRUCTION).passed


def test_restating_the_question_is_not_an_echo_of_a_filled_in_prompt():
    prompt = f"{INSTRUCTION}\n\nProblem: {NATALIA['question']}\n\nSolution: {NATALIA['answer']}"
    candidate = (
        "Natalia sold clips to 48 of her friends in April. In May she sold half as many, "
        "that is 48 / 2 = 24.\nAltogether 48 + 24 = 72 clips.\n#### 72"
    )
    result = MathVerifier()(candidate, NATALIA["answer"], question=NATALIA["question"], instruction=prompt)
    assert result.passed, (result.reason, result.detail)


@pytest.mark.parametrize(
    "sentence",
    [
        "As the original solution says, she sold 72 clips.",
        "Here is the rewritten solution.",
        "Let me rewrite this step by step.",
        "In my own words: the clips add up.",
        "The expert's answer is also right.",
        "This matches the expert solution.",
        "Unlike the Reference Solution, I add first.",
        "The ORIGINAL   ANSWER was terse.",
    ],
)
def test_mentioning_the_rewriting_fails(sentence):
    candidate = NATALIA_REWRITE.replace("#### 72", f"{sentence}\n#### 72")
    result = MathVerifier()(candidate, NATALIA["answer"])
    assert result.reason == "mentions_rewriting"


def test_meta_phrases_are_configurable():
    candidate = NATALIA_REWRITE.replace("#### 72", "Here is the rewritten solution.\n#### 72")
    assert MathVerifier(meta_phrases=[])(candidate, NATALIA["answer"]).passed
    custom = MathVerifier(meta_phrases=["adding both months"])
    assert custom(NATALIA_REWRITE, NATALIA["answer"]).reason == "mentions_rewriting"
    # Whole words only: "rewrites" is not "rewrite" inside "overwrites".
    assert MathVerifier()(NATALIA_REWRITE.replace("Adding", "Overwriting nothing, adding"), NATALIA["answer"]).passed


def test_restating_the_question_fails():
    question, expert = TRAIN_800[817]["question"], TRAIN_800[817]["answer"]
    verifier = MathVerifier()
    assert verifier(MADDIE_STEPS, expert, question=question).passed
    result = verifier(question + "\n\n" + MADDIE_STEPS, expert, question=question)
    assert result.reason == "restates_question", (result.reason, result.detail)
    assert "100% of the question" in result.detail
    # Without the question the gate cannot tell, and the check can be switched off.
    assert verifier(question + "\n\n" + MADDIE_STEPS, expert).passed
    off = MathVerifier(max_question_copy=None)
    assert off(question + "\n\n" + MADDIE_STEPS, expert, question=question).passed


def test_restating_one_fact_of_the_question_passes():
    question, expert = TRAIN_800[817]["question"], TRAIN_800[817]["answer"]
    # Two facts restated before the steps: well under half of the question.
    candidate = "Each cup has 1.5 ounces of coffee beans. A bag of coffee costs $8 and contains 10.5 ounces of beans.\n"
    result = MathVerifier()(candidate + MADDIE_STEPS, expert, question=question)
    assert result.passed, (result.reason, result.detail)


def test_a_rewrite_may_copy_as_much_of_the_question_as_the_expert_answer():
    row = GSM8K_ROWS[7]  # Ken's care package: the expert answer restates most of the question
    verifier = MathVerifier(max_question_copy=0.2)
    assert verifier(row["answer"], row["answer"], question=row["question"]).passed
    assert verifier(row["answer"], NATALIA["answer"].replace("72", "16"), question=row["question"]).reason == (
        "restates_question"
    )


def test_a_copy_of_the_expert_answer_fails_only_where_asked():
    # The expert answer without its <<...>> annotations, word for word: a correct answer, so the
    # default gate keeps it, but it is no rewrite, which the GRPO gate must see.
    copy = "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72"
    assert MathVerifier()(copy, NATALIA["answer"], question=NATALIA["question"]).passed
    result = MathVerifier(max_reference_copy=0.9)(copy, NATALIA["answer"], question=NATALIA["question"])
    assert result.reason == "copies_reference", (result.reason, result.detail)
    assert "100% of the expert answer" in result.detail
    # Keeping one of the expert's lines is fine; a rewrite in other words passes.
    one_line = "In May she sold half of 48, which is 48/2 = 24 clips.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72"
    assert MathVerifier(max_reference_copy=0.9)(one_line, NATALIA["answer"], question=NATALIA["question"]).passed
    assert MathVerifier(max_reference_copy=0.9)(NATALIA_REWRITE, NATALIA["answer"], question=NATALIA["question"]).passed
    assert get_verifier(GRPO_GATE)(copy, NATALIA["answer"], question=NATALIA["question"]).reason == "copies_reference"


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        ("Kylie has 5 + 9 = 14 daisies.\nShe gave away 14 / 2 = 7 daisies.\nShe gave away 14 / 2 = 7 daisies.\n#### 7",
         "repeated_line"),
        ("Kylie has 5 + 9 = 14 daisies.\nShe gave away 14 / 2 = 7 daisies.\nSo she has 14 / 2 = 7 daisies left.\n#### 7",
         "repeated_equation"),
    ],
)
def test_repeated_steps_fail(candidate, reason):
    expert = "Kylie has 5 + 9 = <<5+9=14>>14 daisies.\nShe has 14 - 7 = <<14-7=7>>7 daisies left.\n#### 7"
    question = "Kylie has 5 daisies. Her sister gave her another 9 daisies. Kylie then gave half her daisies to her mother. How many daisies does Kylie have left?"
    result = MathVerifier()(candidate, expert, question=question)
    assert result.reason == reason, (result.reason, result.detail)
    assert MathVerifier(reject_repeated_lines=False, reject_repeated_equations=False)(
        candidate, expert, question=question
    ).passed
