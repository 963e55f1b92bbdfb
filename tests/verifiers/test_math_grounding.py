"""Tests of the grounded-operand check: every number a step computes with comes from the question, an earlier
result or a common constant (hf_patchdist.verifiers.math.grounding, ``require_grounded_operands``)."""

from __future__ import annotations

import pytest
from .verifier_cases import NATALIA

from hf_patchdist.verifiers import GRPO_GATE, MathVerifier, get_verifier, stage_ii_gate
from hf_patchdist.verifiers.math.grounding import first_ungrounded_operand, question_values

# The rewrites below also leave out expert results; this file is about the operands.
GROUNDED = MathVerifier(require_grounded_operands=True, min_intermediate_recall=None)

# Rewrites that best-of-8 accepted on GSM8K train[800:1000] (Stage II gate 3): their arithmetic holds, but they
# compute with an intermediate result of the expert answer that they never derive. (question, expert answer,
# rewrite, the ungrounded number)
TOM = (
    "Tom cannot afford a normal doctor, so he goes to a discount clinic that is 70% cheaper.   It takes two visits, "
    "though, instead of 1.   A normal doctor charges $200 for a visit.   How much money does he save?",
    "Each of Tom's visits was 200*.7=$<<200*.7=140>>140 cheaper\nSo he paid $200 - $140 = $<<200-140=60>>60 per visit\n"
    "That means he paid $60 * 2 = $<<60*2=120>>120\nSo he saved $200 - $120 = $<<200-120=80>>80\n#### 80",
    "Tom saved $120, which means he had to pay $200 - $120 = $80.\n#### 80",
    "120",
)
JAMES = (
    "James takes 20 units per semester at community college.  If each unit costs $50 how much does he pay for 2 semesters?",
    "He pays 20*50=$<<20*50=1000>>1000 per semester\nSo he pays 1000*2=$<<1000*2=2000>>2000\n#### 2000",
    "He pays 1000*2=2000\n#### 2000",
    "1000",
)
ERIC = (
    "Eric has 20 marbles. He has 12 white marbles, 6 blue marbles, and the rest are green marbles. How many green "
    "marbles does Eric have?",
    "Eric has a total of 12 + 6 = <<12+6=18>>18 white and blue marbles.\nThus, he has 20 - 18 = <<20-18=2>>2 green marbles.\n#### 2",
    "Eric has a total of 20 - 18 = 2 green marbles.\nHe has 2 green marbles.\n#### 2",
    "18",
)
JON = (
    "Jon buys 2 coffees a day from his favorite coffee shop.  They cost $2 each.  How much does he spend in April?",
    "He spends 2*$2=$<<2*2=4>>4 per day\nApril has 30 days so he spends $4*30=$<<4*30=120>>120\n#### 120",
    "Jon spends $4*30 = $120 in April.\n#### 120",
    "4",
)
STELLA = (
    "Stella wanted to buy a new dress for the upcoming dance.  At the store she found out that the dress she wanted "
    "was $50.  The store was offering 30% off of everything in the store.  What was the final cost of the dress?",
    "The dress was $50 and 30% off so 50*.30 = $<<50*.30=15>>15 discount price\n"
    "The dress cost $50 minus $15 (30% off discount) so 50-15 = $<<50-15=35>>35\n#### 35",
    "Step 1: Find the total cost of the dress\nTotal cost = 50 - 15 = $35\n#### 35",
    "15",
)
EXAMPLES = [TOM, JAMES, ERIC, JON, STELLA]


@pytest.mark.parametrize("question, expert, rewrite, number", EXAMPLES, ids=["tom", "james", "eric", "jon", "stella"])
def test_rewrites_that_take_a_result_from_the_expert_answer_fail(question, expert, rewrite, number):
    assert MathVerifier(require_grounded_operands=False, min_intermediate_recall=None)(rewrite, expert, question=question).passed  # what gate 3 accepted
    result = GROUNDED(rewrite, expert, question=question)
    assert result.reason == "ungrounded_operand"
    assert result.detail.startswith(f"{number} in ")  # the detail names the number and its step


@pytest.mark.parametrize("question, expert, rewrite, number", EXAMPLES, ids=["tom", "james", "eric", "jon", "stella"])
def test_their_expert_answers_pass(question, expert, rewrite, number):
    result = GROUNDED(expert, expert, question=question)
    assert result.passed, (result.reason, result.detail)


def test_the_natalia_row_passes_and_a_skipped_half_fails():
    assert GROUNDED(NATALIA["answer"], NATALIA["answer"], question=NATALIA["question"]).passed
    # "half as many" grounds a division by 2, not the 24 it gives.
    result = GROUNDED("Together she sold 48 + 24 = 72 clips.\n#### 72", NATALIA["answer"], question=NATALIA["question"])
    assert (result.reason, result.detail[:5]) == ("ungrounded_operand", "24 in")


def test_an_unknown_question_skips_the_check():
    question, expert, rewrite, _ = TOM
    assert GROUNDED(rewrite, expert).passed
    assert GROUNDED(rewrite, expert, question=None).passed


@pytest.mark.parametrize(
    "question, body",
    [
        # Number words, and multiples.
        ("Sam has three bags of twelve apples.", "He has 3 * 12 = 36 apples."),
        ("Lake Crystal has twenty percent fewer frogs than the forty-five of Lassie Lake.", "It has 45 * 0.2 = 9 fewer, 45 - 9 = 36."),
        ("Ann is twice as old as Bo, who is 7.", "Ann is 7 * 2 = 14."),
        ("Jerk Tuna has one hundred forty-four fish.", "Tall Tuna has 2 * 144 = 288."),
        ("Ann has half as many as Bo's 30.", "Ann has 30 * 0.5 = 15."),
        ("He buys a dozen eggs at $3 each.", "He pays 12 * 3 = $36."),
        ("She read a third of the 90 pages.", "She read 90 / 3 = 30 pages, so 90 * 1/3 = 30."),
        # Percentages: as a number, a fraction, the rest and the increase.
        ("The $50 dress is 30% off.", "The discount is 50 * 0.3 = 15, so it costs 50 * 0.7 = 35."),
        ("The $50 dress is 30% off.", "It costs 50 * 70% = 35."),
        ("A $50 price rises by 30 percent.", "It becomes 50 * 1.3 = 65."),
        # Fractions of the question.
        ("He ate 2/5 of the 35 quarters.", "He ate 35 * 2/5 = 14, and 35 * 0.6 = 21 are left."),
        # Unit conversions the question's units bring, and common constants.
        ("Kim drinks a 1.5-quart bottle.", "That is 1.5 * 32 = 48 ounces."),
        ("He walks 3 miles an hour for 2 hours a day. How far does he walk in a week?", "That is 3 * 2 = 6 miles a day, 6 * 7 = 42 a week."),
        ("Jon buys 2 coffees a day at $2 each. How much in April?", "He spends 2 * 2 = 4 a day, 4 * 30 = 120 in April."),
        ("She works Monday to Friday, 8 hours a day.", "She works 8 * 5 = 40 hours."),
        ("He read for two weeks, 10 pages a day.", "He read 14 * 10 = 140 pages."),
        ("The show lasts 1 hour 20 minutes with a 10-minute break.", "It plays 80 - 10 = 70 minutes."),
    ],
)
def test_numbers_the_question_gives_are_grounded(question, body):
    assert first_ungrounded_operand(body, question) is None


def test_results_derived_earlier_are_grounded_and_later_ones_are_not():
    question = "Sam has 3 bags of 12 apples and eats 5."
    assert first_ungrounded_operand("He has 3 * 12 = 36 apples.\nHe keeps 36 - 5 = 31.", question) is None
    # A running computation uses the result it just derived; an expression's value counts as derived too.
    assert first_ungrounded_operand("He keeps 3 * 12 = 36 - 5 = 31.", question) is None
    assert first_ungrounded_operand("He has 3 * 12 apples.\nHe keeps 36 - 5 = 31.", question) is None
    # Used before it is computed: a later sentence does not ground an earlier one.
    detail = first_ungrounded_operand("He keeps 36 - 5 = 31.\nHe had 3 * 12 = 36.", question)
    assert detail is not None and detail.startswith("36 in '36 - 5 = 31'")


def test_annotations_are_steps():
    question = "Sam has 3 bags of 12 apples and eats 5."
    assert first_ungrounded_operand("He keeps <<3*12=36>>36 apples.\nHe keeps 36-5 = 31.", question) is None
    detail = first_ungrounded_operand("He keeps <<36-5=31>>31 apples.", question)
    assert detail is not None and detail.startswith("36 in")


JENNY = {
    "question": "Jenny is working on a school project. She spends 10 hours doing research for the project and 2 hours writing a proposal. If she has 20 hours total to work on the project, how many hours does she have left to write her report?",
    "rewrite": "Jenny has 20-12 = 8 hours to write her report.\n#### 8",
}


def test_a_hundredfold_grounds_only_where_cents_are_named():
    # Gate 12: "20 hours" brings 1200 minutes, and 1200 / 100 grounded the 12 (= 10 + 2, done in the head) of a
    # training rewrite of the committed RFT rewriter.
    detail = first_ungrounded_operand(JENNY["rewrite"], JENNY["question"])
    assert detail is not None and detail.startswith("12 in '20-12 = 8'")
    assert first_ungrounded_operand("She has 20 - 10 - 2 = 8 hours left.", JENNY["question"]) is None
    # Dollars and cents: the hundredfold still grounds.
    assert first_ungrounded_operand("He pays 150 - 25 = 125 cents.", "A pen costs $1.50 and he has a 25-cent coupon.") is None


def test_question_values():
    values = question_values("She has two dozen eggs, spends 25% of her $40 and works Monday through Thursday.")
    for expected in (2, 12, 25, 0.25, 75, 0.75, 1.25, 40, 4, 3):
        assert any(abs(v - expected) < 1e-9 for v in values), expected


def test_the_presets_turn_it_on_and_it_round_trips():
    assert GRPO_GATE["require_grounded_operands"] is True
    assert stage_ii_gate(GRPO_GATE)["require_grounded_operands"] is True
    assert get_verifier(GROUNDED.to_dict()).require_grounded_operands is True
    # On by default, so the default Stage II gate ({"name": "math"}) and rewriters saved before gate 4 have it too.
    assert MathVerifier().require_grounded_operands is True
    assert get_verifier({"name": "math"}).require_grounded_operands is True


def test_numbers_written_against_han_characters_are_grounded():
    question = "娜塔莉亚在四月份把发夹卖给了她的48个朋友，五月份她卖出的发夹数量是四月份的一半。"
    assert 48.0 in question_values(question)
    assert first_ungrounded_operand("五月是四月的一半：48 / 2 = 24。\n两个月合计 48 + 24 = 72。", question) is None


def test_a_time_factor_needs_its_unit_in_the_question():
    # The demo's leak: 12 = 6 x 2 taken from the expert answer passed as "months per year" before.
    question = "Ben buys 6 cookies for each of 2 friends. Each of the cookies costs $9. How much does Ben spend in dollars?"
    rewrite = "Ben buys 2 cookies for each of 2 friends, so 2 * 2 = 4 cookies.\nEach cookie costs $9, so 12 * 9 = 108.\n#### 108"
    assert first_ungrounded_operand(rewrite, question) is not None
    assert first_ungrounded_operand("12 * 9 = 108", "A dozen boxes cost $9 each. What do they cost?") is None
