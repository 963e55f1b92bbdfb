"""Tests of the math gate on expert answers and real rewrites (hf_patchdist.verifiers.math.verifier)."""

from __future__ import annotations

import re

import pytest
from .verifier_cases import BETTY, CANDIES, GSM8K_ROWS, NATALIA, NATALIA_REWRITE, TRAIN_800, WENG

from hf_patchdist.verifiers import GRPO_GATE, MathVerifier, VerificationResult, extract_math_answer, get_verifier, math_answers_equal

# Expert answers that do a step in their head ("In one hour, there are 3 sets of 20 minutes": 60 / 20 is never
# written), which the grounded-operand check rejects: 2% of GSM8K's (benchmarks/results/gate_self_check.json).
IN_HEAD_STEPS = {GSM8K_ROWS[14]["question"]}

# ---------------------------------------------------------------------------------------------
# Expert answers and real rewrites
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", GSM8K_ROWS, ids=[f"train{i}" for i in range(len(GSM8K_ROWS))])
def test_expert_answer_verifies_against_itself(row):
    result = MathVerifier()(row["answer"], row["answer"], question=row["question"])
    if row["question"] in IN_HEAD_STEPS:
        assert result.reason == "ungrounded_operand", (result.reason, result.detail)
        result = MathVerifier(require_grounded_operands=False)(row["answer"], row["answer"], question=row["question"])
    assert result.passed, (result.reason, result.detail)
    assert result.text == row["answer"].strip()


@pytest.mark.parametrize("row", GSM8K_ROWS, ids=[f"train{i}" for i in range(len(GSM8K_ROWS))])
def test_expert_answer_without_annotations_verifies_against_itself(row):
    answer = re.sub(r"<<[^<>]*>>", "", row["answer"])
    verifier = MathVerifier(require_grounded_operands=row["question"] not in IN_HEAD_STEPS)
    result = verifier(answer, row["answer"], question=row["question"])
    assert result.passed, (result.reason, result.detail)


@pytest.mark.parametrize(
    ("candidate", "row"),
    [
        (NATALIA_REWRITE, NATALIA),
        (
            "Natalia sold 48 clips in April. Half of that is 48 / 2 = 24, which is what she sold in May. "
            "Altogether that makes 48 + 24 = 72 clips.\nThe answer is 72.",
            NATALIA,
        ),
        ("April: 48 clips. May: $48 \\div 2 = 24$ clips. Total: $48 + 24 = 72$.\n\\boxed{72}", NATALIA),
        (
            "Weng is paid $12 for 60 minutes, which is 12/60 = $0.20 a minute.\n"
            "For 50 minutes she gets 50 × 0.20 = $10.\n#### $10",
            WENG,
        ),
        (
            # Half of it written as a step: "half of it: $50" alone is done in the head (grounded by accident before gate 12).
            "The wallet costs $100 and Betty has half of it: 100 / 2 = $50.\n"
            "Her parents give $15 and her grandparents twice that, 2 * 15 = $30.\n"
            "She still needs 100 - 50 - 15 - 30 = $5.\n#### 5",
            BETTY,
        ),
    ],
    ids=["hash", "answer_is", "latex_boxed", "unicode_times", "betty"],
)
def test_correct_rewrite_in_other_words_passes(candidate, row):
    # Another final-line form than the expert's is a correct rewrite, and a target in another format: only
    # match_reference_format (on by default, its own test in test_math_answers.py) tells them apart.
    result = MathVerifier(match_reference_format=False)(candidate, row["answer"], question=row["question"])
    assert result.passed, (result.reason, result.detail)
    assert result == VerificationResult(True, "", candidate.strip())
    assert bool(result)


# ---------------------------------------------------------------------------------------------
# The failure modes seen with a small rewriter
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "candidate",
    [
        "The answer is 72.",
        "#### 72",
        "The answer is 72.\n#### 72",
        "72\n#### 72",
        "\\boxed{72}",
        "Natalia sold 48 clips in April.\n#### 72",
    ],
)
def test_bare_answer_fails_no_reasoning(candidate):
    result = MathVerifier()(candidate, NATALIA["answer"], question=NATALIA["question"])
    assert not result.passed
    assert result.reason == "no_reasoning"


def test_reasoning_requirement_can_be_disabled():
    verifier = MathVerifier(
        min_reasoning_steps=0, require_derived_answer=False, min_length_ratio=0, min_intermediate_recall=None, match_reference_format=False
    )
    assert verifier("The answer is 72.", NATALIA["answer"]).passed
    # With only the step count disabled, a bare answer is still not derived from anything.
    result = MathVerifier(min_reasoning_steps=0, min_length_ratio=0, min_intermediate_recall=None)("The answer is 72.", NATALIA["answer"])
    assert result.reason == "answer_not_derived"


def test_numbers_without_arithmetic_are_not_reasoning():
    # Each sentence has numbers the question does not give, but none computes anything.
    candidate = (
        "Natalia sold 48 clips in April. Half of that is 24, which is what she sold in May. "
        "Altogether that makes 72 clips.\nThe answer is 72."
    )
    result = MathVerifier()(candidate, NATALIA["answer"], question=NATALIA["question"])
    assert result.reason == "no_reasoning"
    assert result.detail == "0 arithmetic step(s) before the final answer, 1 required"


def test_too_short_against_a_long_expert_answer():
    row = GSM8K_ROWS[5]  # six lines, #### 35
    candidate = "10 + 8 = 18 and 28 + 7 = 35.\n#### 35"
    ungrounded = {"require_grounded_operands": False}  # the 28 is the expert's, never derived here: not what this tests
    result = MathVerifier(**ungrounded)(candidate, row["answer"], question=row["question"])
    assert result.reason == "too_short"
    assert MathVerifier(min_length_ratio=0.1, **ungrounded)(candidate, row["answer"], question=row["question"]).passed


def test_copied_question_words_do_not_count_towards_the_length():
    row = GSM8K_ROWS[5]  # six lines, #### 35
    candidate = "10 + 8 = 18 and 28 + 7 = 35.\n#### 35"
    padded = row["question"] + "\n" + candidate
    permissive = MathVerifier(max_question_copy=1.0, require_grounded_operands=False)  # the 28 is never derived
    assert permissive(padded, row["answer"]).passed  # without the question its words count
    assert permissive(padded, row["answer"], question=row["question"]).reason == "too_short"
    # With the question-copy policy off, every word counts (the gate before these checks).
    assert MathVerifier(max_question_copy=None, require_grounded_operands=False)(padded, row["answer"], question=row["question"]).passed


def test_missing_intermediate_results():
    candidate = "April and May together: 48 + 48 / 2 = 72 clips.\n#### 72"
    assert MathVerifier(min_intermediate_recall=None)(candidate, NATALIA["answer"]).passed
    result = MathVerifier()(candidate, NATALIA["answer"])
    assert result.reason == "missing_intermediate_results"
    assert "missing: 24" in result.detail
    assert MathVerifier(min_intermediate_recall=0.5)(candidate, NATALIA["answer"]).passed
    assert MathVerifier(min_intermediate_recall=1.0)(NATALIA_REWRITE, NATALIA["answer"]).passed


def test_a_rewrite_that_skips_the_experts_results_fails_by_default():
    row = CANDIES
    result = MathVerifier()(row["rewrite"], row["answer"], question=row["question"])
    assert result.reason == "missing_intermediate_results"
    assert result.detail == "2/4 of the expert's intermediate results appear (missing: 21, 9)"
    assert MathVerifier(min_intermediate_recall=None)(row["rewrite"], row["answer"], question=row["question"]).passed
    assert MathVerifier()(row["answer"], row["answer"], question=row["question"]).passed


def test_wrong_and_missing_final_answer():
    wrong = MathVerifier()(NATALIA_REWRITE.replace("72", "73").replace("24 =", "25 ="), NATALIA["answer"])
    assert wrong.reason == "wrong_final_answer"
    assert "'73'" in wrong.detail and "'72'" in wrong.detail
    missing = MathVerifier()("In May 48 / 2 = 24, so 48 + 24 = 72 clips in total.", NATALIA["answer"])
    assert missing.reason == "no_final_answer"


# ---------------------------------------------------------------------------------------------
# Real accepted rewrites (SmolLM2-135M-Instruct on GSM8K train[800:832]) that the gate let through
# ---------------------------------------------------------------------------------------------


LEAKED_REWRITES = {
    # Once counted a good rewrite: it skips 5 + 4 = 9 and 9 / 3 = 3 and computes with the expert's 9 and 3.
    815: (
        "Bingley has 5 bracelets.\nKelly gives Bingley 16 / 4 = 4 bracelets.\n"
        "Bingley gives a third of his bracelets to his little sister.\n"
        "In the end, Bingley has 9 - 3 = 6 bracelets remaining.\n#### 6"
    ),
    # Numbers, but no arithmetic at all.
    801: (
        "Alex gets paid $50 a week and pays his weekly water bill for $55, which is 10% of his weekly income. "
        "He also gives away another 10% of his weekly income as a tithe.\n#### 345"
    ),
    # The reasoning arrives at 28; the final answer 21 comes from nowhere.
    802: (
        "Ivan has a bird feeder in his yard that holds two cups of birdseed. Each cup can feed fourteen birds, "
        "so he has to feed 14 * 2 = 28 birds weekly.\n\n#### 21"
    ),
    # "6 screens * 8 movies/day = 52" is false; units sat between the numbers and the operators.
    805: (
        "A movie theater has 6 screens that show movies all day, which means each screen shows "
        "8 hours/day / 2 hours/day = 4 movies/day.\nEach screen shows 4 movies/day * 2 hours/day = 8 movies/day.\n"
        "So in total, the movie theater shows 6 screens * 8 movies/day = 52 movies/day.\n#### 24"
    ),
    821: (
        "Tammy can eat twice as many pickle slices as Sammy who eats 15 so Tammy can eat 15*2 = 30 pickle slices\n"
        "Ron eats 20% fewer pickle slices than Tammy who eats 30 so Ron eats 30 - 20 = 10 more slices than Tammy\n"
        "#### 24"
    ),
    # 4 is only a number of the question ("4 packs"), never a result.
    822: (
        "Cupcakes are sold in packages of 10 and 15, so 10 + 15 = 25.\n"
        "If Jean bought 4 packs of 10 cupcakes, she already has 10 cupcakes.\n"
        "She needs to buy 4 packs of 10 cupcakes x 10 = 40 cupcakes.\n#### 4"
    ),
}


GOOD_REWRITES = {
    828: (
        "Tim gets 2*6 = 12 hours the first 2 days.\nThe next 2 days he gets 2*10 = 20 hours.\n"
        "So he got 12+20 = 32 hours.\n#### 32"
    ),
    830: (
        "100-40 = 60 percent of students are remaining.\n"
        "60/2 = 30 percent of students are present in school.\n#### 30"
    ),
}


@pytest.mark.parametrize(
    ("index", "reason", "detail"),
    [
        (801, "no_reasoning", "0 arithmetic step(s) before the final answer, 1 required"),
        (802, "answer_not_derived", "the final answer '21' is not the result of any equation or of the last"),
        (805, "wrong_equation", "6*8=52 does not hold (left side is 48)"),
        (815, "ungrounded_operand", "9 in '9 - 3 = 6' is neither in the question nor derived before"),
        (821, "answer_not_derived", "the final answer '24' is not"),
        (822, "answer_not_derived", "the final answer '4' is not"),
    ],
)
def test_leaked_rewrites_are_rejected(index, reason, detail):
    row = TRAIN_800[index]
    result = MathVerifier()(LEAKED_REWRITES[index], row["answer"], question=row["question"])
    assert not result.passed
    assert result.reason == reason
    assert result.detail.startswith(detail)
    # The final answers are right: only the new checks catch them.
    assert math_answers_equal(extract_math_answer(LEAKED_REWRITES[index]), extract_math_answer(row["answer"]))


def test_wrong_unit_equation_also_fails_derivation():
    row = TRAIN_800[805]
    result = MathVerifier(check_equations=False)(LEAKED_REWRITES[805], row["answer"], question=row["question"])
    assert result.reason == "answer_not_derived"


@pytest.mark.parametrize("index", sorted(GOOD_REWRITES))
def test_good_real_rewrites_pass(index):
    row = TRAIN_800[index]
    result = MathVerifier()(GOOD_REWRITES[index], row["answer"], question=row["question"])
    assert result.passed, (result.reason, result.detail)
    assert MathVerifier(strict=True)(GOOD_REWRITES[index], row["answer"], question=row["question"]).passed


@pytest.mark.parametrize("index", sorted(TRAIN_800))
def test_train_800_expert_answers_pass_with_and_without_annotations(index):
    row = TRAIN_800[index]
    for answer in (row["answer"], re.sub(r"<<[^<>]*>>", "", row["answer"])):
        result = MathVerifier()(answer, row["answer"], question=row["question"])
        assert result.passed, (answer, result.reason, result.detail)


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"equation_rel_tol": -1},
        {"min_reasoning_steps": -1},
        {"min_length_ratio": -0.1},
        {"min_intermediate_recall": 1.5},
        {"meta_phrases": "rewrite"},
        {"max_question_copy": 1.5},
        {"max_reference_copy": -0.1},
    ],
)
def test_invalid_math_options(kwargs):
    with pytest.raises((ValueError, TypeError)):
        MathVerifier(**kwargs)


@pytest.mark.parametrize(
    "candidate",
    [
        "72 + 0 = 72\n#### 72",
        "72 * 1 = 72\n#### 72",
        "So 0 + 72 = 72 clips.\n#### 72",
        "72 / 1 = 72\n#### 72",
        "72 = 72\n#### 72",
        "<<72+0=72>>72 clips\n#### 72",
    ],
)
def test_identity_steps_are_not_reasoning(candidate):
    result = MathVerifier(min_length_ratio=0)(candidate, NATALIA["answer"])
    assert result.reason == "no_reasoning", (result.reason, result.detail)


def test_identity_detection_leaves_real_steps_and_clock_times():
    assert MathVerifier._count_reasoning_steps("So 3 + 0 * 5 = 3 and 48 + 24 = 72.") == 1
    assert MathVerifier._count_reasoning_steps("His flight took 10:00-00:00 = 10 hours.") == 1
    assert MathVerifier._count_reasoning_steps("48 / 2 = 24 clips.\n24 + 0 = 24.\n48 + 24 = 72.") == 2


def test_step_count_relative_to_the_expert():
    # Without the intermediate-results check, which would fail the skipped and merged steps first.
    skipped = "48 + 24 = 72 clips.\n#### 72"
    assert MathVerifier(min_intermediate_recall=None)(skipped, NATALIA["answer"]).passed  # one step is enough without the ratio
    result = MathVerifier(min_intermediate_recall=None, min_step_ratio=0.6)(skipped, NATALIA["answer"])
    assert result.reason == "too_few_steps", (result.reason, result.detail)
    assert "expert answer's 2" in result.detail
    assert MathVerifier(min_intermediate_recall=None, min_step_ratio=0.6)(NATALIA_REWRITE, NATALIA["answer"]).passed
    one_sentence = "12 / 60 = 0.2 dollars a minute, and 0.2 * 50 = 10 dollars in all.\n#### 10"
    assert MathVerifier(min_intermediate_recall=None, min_step_ratio=1.0)(one_sentence, WENG["answer"]).passed, "two equations are two steps"
    # A step merged out of three is allowed at 0.6 (2 of 3 required).
    expert = GSM8K_ROWS[2]["answer"]  # Betty: three steps
    merged = "Betty has 100 / 2 = 50 dollars.\nShe still needs 100 - 50 - 15 - 15 * 2 = 5 dollars.\n#### 5"
    assert MathVerifier(min_intermediate_recall=None, min_step_ratio=0.6)(merged, expert).passed
    with pytest.raises(ValueError, match="min_step_ratio"):
        MathVerifier(min_step_ratio=1.5)


def test_grpo_gate_closes_the_natalia_leaks():
    grpo = get_verifier(GRPO_GATE)
    question = NATALIA["question"]
    leaks = {
        "72 + 0 = 72\n#### 72": "no_reasoning",
        "48 + 24 = 72\n#### 72": "too_few_steps",
        NATALIA["answer"]: "copies_reference",  # annotations left in
        NATALIA["answer"].replace("clips in May", "pins in May").replace("altogether", "overall"): "copies_reference",
    }
    for candidate, reason in leaks.items():
        result = grpo(candidate, NATALIA["answer"], question=question)
        assert result.reason == reason, (candidate, result.reason, result.detail)
    assert grpo(NATALIA_REWRITE, NATALIA["answer"], question=question).passed
