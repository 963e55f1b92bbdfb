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
        # LaTeX: the box is the right side.
        "In May $48 \\div 2 = 24$, so in all $48 + 24 = \\boxed{72}$",
    ],
)
def test_derived_final_answers_pass(candidate):
    # 361 and 1.44 are made up to test rounding: the grounded-operand check is not what this is about.
    # The final-line form (#### or \\boxed against GSM8K's ####) is match_reference_format's own test.
    verifier = MathVerifier(min_length_ratio=0, require_grounded_operands=False, min_intermediate_recall=None, match_reference_format=False)
    result = verifier(candidate, NATALIA["answer"], question=NATALIA["question"])
    assert result.passed, (result.reason, result.detail)


@pytest.mark.parametrize(
    "candidate",
    [
        "In May she sold 48 / 2 = 24 clips, so she sold 24 + 24 clips.\n#### 72",
        "In May she sold 48 / 2 = 24 clips.\nShe sold 48 clips in April.\n#### 72",
        "In May she sold 48 / 2 = 24 clips.\nThe answer = 72",
        # Only stated in the conclusion, while the expert answer computes it (48+24 = 72): a skipped step.
        "In May she sold 48 / 2 = 24 clips.\nSo she sold 72 clips in April and May.\n#### 72",
        "In May she sold 48 / 2 = 24 clips.\nTotal: 24 clips.\n\\boxed{72}",
    ],
)
def test_underived_final_answers_fail(candidate):
    result = MathVerifier(min_length_ratio=0)(candidate, NATALIA["answer"], question=NATALIA["question"])
    assert result.reason == "answer_not_derived", (result.reason, result.detail)
    assert MathVerifier(min_length_ratio=0, require_derived_answer=False, match_reference_format=False)(candidate, NATALIA["answer"]).passed


ZIP = {
    "question": "Brad lives on a street whose houses are numbered 11020 to 11030. His house is the sixth from the start. What is his zip code if it equals his house number?",
    "answer": "The houses go 11020, 11021, ... so counting six from 11020 gives his house.\nThus, Brad's zip code is 11025.\n#### 11025",
}


def test_a_stated_conclusion_counts_as_derived_only_where_the_expert_answer_states_it_too():
    stated = "Counting six houses from 11020 reaches his.\nSo his zip code is 11025.\n#### 11025"
    verifier = MathVerifier(min_length_ratio=0, min_reasoning_steps=0)
    assert verifier(stated, ZIP["answer"], question=ZIP["question"]).passed
    # The builtin-set row the demo accepted before the fix: "2*2 = 4" is no step towards 108, which is only stated.
    reference = "6*2=<<6*2=12>>12\n12*9=<<12*9=108>>108\n#### 108"
    question = "Ben buys 6 cookies for each of 2 friends. Each of the cookies costs $9. How much does Ben spend in dollars?"
    leak = "Ben buys 2 cookies for each of 2 friends, so he buys 2*2 = 4 cookies. Each cookie costs $9. Ben spent $108.\n#### 108"
    result = MathVerifier()(leak, reference, question=question)
    assert result.reason == "answer_not_derived", (result.reason, result.detail)


def test_an_answer_stated_in_the_reasoning_must_be_the_final_answer():
    reference = "He walks 2 x 3 = <<2*3=6>>6 meters.\n#### 6"
    question = "A robot walks 2 meters 3 times. How many meters does it walk?"
    leak = "1. 2 x 3 = 6 meters\n2. 6 x 3 = 18\n3. 18 + 2 = 20\nThe final answer is 20 meters.\n#### 6"  # passed gate v3 in GRPO
    result = MathVerifier(min_length_ratio=0)(leak, reference, question=question)
    assert result.reason == "contradicts_final_answer" and "20" in result.detail, (result.reason, result.detail)
    agreeing = "He walks 2 x 3 = 6 meters.\nThe answer is 6.\n#### 6"
    assert MathVerifier(min_length_ratio=0)(agreeing, reference, question=question).passed
    assert MathVerifier(min_length_ratio=0)("2 x 3 = 6, so the answer is $6.00.\n#### 6", reference, question=question).passed


@pytest.mark.parametrize("strict", [False, True])
def test_a_second_answer_line_before_the_final_one_fails(strict):
    # The best-of-32 demo kept "#### 13 = 9 + 4" inside an accepted target: Stage II trims only what follows the
    # final line, so an answer marker before it stayed in the SFT text.
    reference = "He walks 2 x 3 = <<2*3=6>>6 meters.\n#### 6"
    question = "A robot walks 2 meters 3 times. How many meters does it walk?"
    leak = "He walks 2 x 3 = 6 meters.\n#### 6 = 2 x 3\n#### 6"
    result = MathVerifier(min_length_ratio=0, strict=strict)(leak, reference, question=question)
    assert result.reason == "extra_final_answer_line" and "#### 6 = 2 x 3" in result.detail
    assert MathVerifier(min_length_ratio=0, strict=strict)("He walks 2 x 3 = 6 meters.\n#### 6", reference, question=question).passed


ANTONIO = {
    "question": "Antonio is preparing a meal of spaghetti and meatballs for his family.  His recipe for meatballs calls for 1/8 of a pound of hamburger per meatball.  Antonio has 8 family members, including himself.  If he uses 4 pounds of hamburger to make meatballs, and each member of the family eats an equal number of meatballs, how many meatballs will Antonio eat?",
    "answer": "If one meatball is made from 1/8 pound of hamburger meat, then 4 pounds of hamburger meat will make 4/(1/8)=4*8=<<4/(1/8)=32>>32 meatballs.\n32 meatballs divided amongst 8 family members is 32/8=<<32/8=4>>4 meatballs per family member.\n#### 4",
}


@pytest.mark.parametrize(
    "candidate, reference, question",
    [
        # Accepted from the committed rewriter's best-of-8 under gate 9: 32/8 is never computed; the 4 of "= 4*8" is an operand.
        (
            "One meatball is made from 1/8 pound of hamburger meat.\n\nSo, 4 pounds of hamburger meat will make 4/(1/8) = 4*8 = 32 meatballs.\n\n#### 4",
            ANTONIO["answer"],
            ANTONIO["question"],
        ),
        # A running-computation reading that is false ("48 + 48 + 48 = 72") derives nothing when the full reading holds.
        ("In May she sold 48 / 2 = 24 clips.\nTwo Aprils would be 48 + 48 + 48 = 72 * 2 = 144 clips.\n#### 72", NATALIA["answer"], NATALIA["question"]),
        # Gate 12: the first number of an expression in an unknown (an RFT training rewrite: "C = 120 * C / C = 30 * C /
        # So, each butterfly spends 30 * C hours in a cocoon. / #### 30").
        ("In May she sold 48 / 2 = 24 clips.\nIn all she sold C = 72 * C clips.\n#### 72", NATALIA["answer"], NATALIA["question"]),
    ],
)
def test_an_operand_after_equals_does_not_derive_the_final_answer(candidate, reference, question):
    result = MathVerifier(min_length_ratio=0)(candidate, reference, question=question)
    assert result.reason == "answer_not_derived", (result.reason, result.detail)


@pytest.mark.parametrize(
    "candidate",
    [
        # A running computation: its first number after "=" is the result of what comes before.
        "In May she sold 48 / 2 = 24 clips.\nIn all she sold 48 + 24 = 72 * 1 = 72 clips.\n#### 72",
        "In May she sold 48 / 2 = 24 clips.\nIn all she sold 24 + 48 = 72 clips in two months.\n#### 72",
        # A number after "=" that ends a sentence or is followed by a word, not by an operand.
        "In May she sold 48 / 2 = 24 clips.\nIn all she sold 48 + 24 = 72 times.\n#### 72",
    ],
)
def test_results_after_equals_still_derive(candidate):
    verifier = MathVerifier(min_length_ratio=0, min_intermediate_recall=None, match_reference_format=False)
    result = verifier(candidate, NATALIA["answer"], question=NATALIA["question"])
    assert result.reason != "answer_not_derived", (result.reason, result.detail)
