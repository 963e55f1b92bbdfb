"""Tests of the equation check: units, arithmetic, equations that must hold, repeated equations
(hf_patchdist.verifiers.math.units, .arithmetic and .equations)."""

from __future__ import annotations

import pytest
from .verifier_cases import BETTY, COW, MADDIE_STEPS, TRAIL_MIX, TRAIN_800

from hf_patchdist.verifiers import MathVerifier

# GSM8K train row 167: the expert answer itself multiplies wrongly (192*100 is 19200, not 1920).
GSM8K_ROW_WITH_ERROR = {
    "question": "Janet filmed a new movie that is 60% longer than her previous 2-hour long movie.  Her previous movie cost $50 per minute to film, and the newest movie cost twice as much per minute to film as the previous movie.  What was the total amount of money required to film Janet's entire newest film?",
    "answer": "The first movie was 2*60=<<2*60=120>>120 minutes\nSo this movie is 120*.6=<<120*.6=72>>72 minutes longer\nSo this movie is 192 minutes\nIt also cost 50*2=$<<50*2=100>>100 per minute to film\nSo it cost 192*100=$1920\n#### 1920",
}


def test_expert_answer_with_a_real_arithmetic_error_is_caught():
    row = GSM8K_ROW_WITH_ERROR
    result = MathVerifier()(row["answer"], row["answer"], question=row["question"])
    assert result.reason == "wrong_equation"
    assert "192*100" in result.detail and "19200" in result.detail


def test_expert_answer_slip_between_units_is_caught():
    # GSM8K train row 5350: 13 + 4 + 16 is 33 (the final answer), not 45.
    answer = (
        "Find the number of orange marbles. 13 marbles - 9 marbles = <<13-9=4>>4 marbles\n"
        "Find the number of purple marbles. 4 marbles x 4 = <<4*4=16>>16marbles\n"
        "Find the total amount of pink, orange, and purple marbles. 13 marbles + 4 marbles + 16 marbles = 45 marbles\n"
        "#### 33"
    )
    result = MathVerifier()(answer, answer)
    assert result.reason == "wrong_equation"
    assert result.detail == "13+4+16=45 does not hold (left side is 33)"


def test_wrong_equation_on_the_way_to_the_right_answer_fails():
    candidate = (
        # "half of $100, that is $50" alone is a step done in the head: the 50 was grounded only by an accident of the
        # dollars-for-cents reading (0.5 x 100) until gate 12.
        "Betty starts with half of $100, that is 100 / 2 = $50. The gifts are $15 from her parents and "
        "3*2*5=15 dollars from her grandparents.\nSo she needs 100 - 50 - 15 - 30 = 5 dollars more.\n#### 5"
    )
    result = MathVerifier()(candidate, BETTY["answer"], question=BETTY["question"])
    assert result.reason == "wrong_equation"
    assert result.detail == "3*2*5=15 does not hold (left side is 30)"
    # The same text with the equation fixed passes: the check is about the arithmetic.
    fixed = candidate.replace("3*2*5=15", "15*2=30")
    assert MathVerifier()(fixed, BETTY["answer"], question=BETTY["question"]).passed
    assert MathVerifier(check_equations=False)(candidate, BETTY["answer"]).passed


@pytest.mark.parametrize(
    ("line", "accepted"),
    [
        ("he pays 3*2*5=15 dollars", False),
        ("he pays 3*2*5=30 dollars", True),
        ("It costs $1,200 + $300 = $1,500.", True),
        ("It costs $1,200 + $300 = $1,600.", False),
        ("80 * 50% = 40 apples", True),
        ("100% - 20% = 80% of the class", True),
        ("She works 3-4 hours a day, on 2023-10-12 too.", True),
        ("Each gets 10/3 = 3.33 liters", True),
        ("Each gets 10/3 = 3.5 liters", False),
        ("She fills 10/3 = 3 full boxes", True),
        ("Running total 5 + 3 = 8 * 2 = 16", True),
        ("Running total 5 + 3 = 9 * 2 = 18", False),
        ("Chain 2 * 3 = 3 + 3 = 6", True),
        ("Algebra 2x + 3 = 11 so x = 4", True),
        ("He has 3 x 4 = 12 cards", True),
        ("He has 3 x 4 = 13 cards", False),
        ("In LaTeX $3 \\times 4 = 13$", False),
        ("In LaTeX \\frac{1}{2} \\cdot 10 = 5", True),
        ("**5 + 3 = 9** in bold", False),
        ("2(3+4) = 14 in total", True),
        ("-5 + 3 = 2 degrees", False),
        ("It was 5 times 3 = 16", False),
        ("20 \u2212 5 = 14 left", False),
        ("Annotated 48/2 = <<48/2=25>>24 clips", False),
        ("A leap: 60 / 3/4 = 80 years", True),
        ("Bea earned $2.50 - $2.24 = 26 cents more", True),
        ("The shift is 0900-0130 = 0730 hours", True),
        ("Then 192 / 1.2 = 1.2Y / 1.2 so 160 = Y", True),
        # Unit words between numbers and operators; "x/day" is a unit, not a division by a word.
        ("each screen shows 8 hours/day / 2 hours/day = 4 movies/day", True),
        ("the theater shows 6 screens * 8 movies/day = 52 movies/day", False),
        ("the theater shows 6 screens * 8 movies/day = 48 movies/day", True),
        ("She pays 20 dollars per hour * 8 hours = 170 dollars", False),
        ("She earns $100/day * 2 = $200/day", True),
        ("She earns $100/day * 2 = $300/day", False),
        ("Time is 330km / 110km/hour = 3 hours", True),
        ("He has 20 M&Ms - 12 M&Ms = 9 green M&Ms", False),
        ("It costs $5 a pound * 3 pounds = $16", False),
        ("She bought 4 cups x 3 = 12 cups", True),
        ("She bought 4 cups times 3 = 13 cups", False),
        ("So 48 + 24 = \\boxed{73} clips", False),
        # Units that must stay words: a conversion, mixed sizes, a rate "per 5%", a longer sum.
        ("1/2 a cup = 4 ounces", True),
        ("Lazlo = 4 pounds - 6 ounces = 58 ounces", True),
        ("24 degrees / 3 degrees/5% increase = 8 5% increases", True),
        ("cupcakes for his 25 classmates + his 1 teacher + 1 himself = 27 people", True),
        ("Algebra 2y + 3 = 11", True),
        # A line that is only "result = expression" is read backwards; a number used as a label is not.
        ("14 = 14 * 105 + 840", False),
        ("72 = 48 + 25", False),
        ("72 = 48 + 24", True),
        ("72 = 48 + 24.", True),
        ("$11 = $10 * 10 * (1/10)", False),  # accepted at best-of-32 before the currency sign was allowed
        ("$72 = $48 + $24", True),
        ("Day 2 = 5 * 3 = 15", True),
        ("Week 2 = 5 * 3 dollars", True),
        # A chain of "=" states every link (gate 6: "24 - 8 = 16 = 19" passed the best-of-32 demo).
        ("24 - 8 = 16 = 19 apples", False),
        ("24 - 8 = 16 = 16 apples", True),
        ("32 = 160", False),  # a line that is only two numbers (make demo, gate 6)
        ("48 + 24 = 72\n72 = 72", True),
        ("12 / 60 = 0.2 = 20%", True),
        # An algebra equation holds at the value the text gives its unknown (gate 6).
        ("3x + 7 = 27, so x = 19", False),
        ("3x + 7 = 64, so x = 19", True),
        # "by" after a verb that is not multiplying or dividing does not hide the expression (gate 8: "increased by
        # 200*$3 = $1500" passed the forgetting run's prompted patch).
        ("so its value increased by 200*$3 = $1500.", False),
        ("so its value increased by 200*$3 = $600.", True),
        ("The price was cut by 20 * 2 = 45 dollars", False),
        # Rounding to a whole number is for quotients and products, not sums (gate 8: "1/2+1 = 2 cookies").
        ("so she gets 1/2+1 = 2 cookies", False),
        ("2.5 + 3.7 = 6 liters", False),
        ("Roger needs 16 / 6 = 3 packs", True),
        ("25 × 1/3 = 8 students", True),
        # A mixed number on the right is one number (GSM8K train row 802 writes "2 - 1/2 = 1 1/2").
        ("so the birds eat 2 - 1/2 = 1 1/2 cups", True),
        ("so the birds eat 2 - 1/2 = 1 1/4 cups", False),
        # An ascending "a-b" is a range only with its label; stating a result, it is a subtraction (gate 9: "The total
        # number of cars is 300-400 = 300 cars" passed in the RFT rewriter's best-of-8 rewrites).
        ("The total number of cars is 300-400 = 300 cars.", False),
        ("So 300-400 = 300", False),
        ("300-400 = 300 cars", False),
        ("x = 300-400 = 300", False),
        ("Weeks 1-2 = 10 hours of practice", True),
        ("The total is 400-300 = 100 cars", True),
        # A mixed number on the left is one number too; the equation was skipped unread before gate 11 ("21 * 1 1/2 =
        # 21 birds" passed in the trained rewriter's best-of-8 rewrites).
        ("Ivan's feeder feeds 14 * 1 1/2 = 21 birds", True),
        ("Ivan's feeder feeds 21 * 1 1/2 = 21 birds", False),
        ("It takes 2 1/4 + 3/4 = 3 hours", True),
        # A whole number gets no relative margin (gate 11; "825-.2 = 825 - 165" held within 1e-3); stated decimals
        # hold when correctly rounded.
        ("So that means he pays 825-.2 = 825", False),
        ("She reads 1000 + 1 = 1000 pages", False),
        ("Each load is 100 / 15 = 6.67 kilograms", True),
        ("Each load is 100 / 15 = 6.68 kilograms", False),
        # An equation in a parenthetical remark is read (gate 12: "(28 items * 100% = 28 items)" was skipped).
        ("She sold 24 clips (48 clips / 2 = 25 clips) in May", False),
        ("She sold 24 clips (48 clips / 2 = 24 clips) in May", True),
        # Unit labels in parentheses are unit words (gate 13: "10 (Pets) * 5 (Groceries) = 50 (Groceries)" was not read).
        ("Dev spends 10 (Pets) * 5 (Groceries) = 60 (Groceries)", False),
        ("Dev spends 10 (Pets) * 5 (Groceries) = 50 (Groceries)", True),
    ],
)
def test_equations_are_checked(line, accepted):
    """Every line above is right or wrong as a reader reads it, and the gate agrees: ``accepted`` is both
    whether the line's equations hold and whether the gate passes it (known exceptions: the next test). Rounded
    results are read as the expert answer allows them (``match_reference_rounding``: its own test below)."""
    candidate = f"{line}\nTherefore the total is 72.\n#### 72"
    result = MathVerifier(match_reference_rounding=False)(candidate, "Worked steps.\n#### 72")
    assert result.passed is accepted, (result.reason, result.detail)
    if not accepted:
        assert result.reason == "wrong_equation"


# Lines a careful reader calls wrong that the gate lets through on purpose: each reading it skips is one
# that, checked, would fail correct GSM8K solutions. Not a wish list: if the gate gets stricter on one of
# them, move the line to test_equations_are_checked with accepted=False.
KNOWN_LENIENT = [
    # "^" with a huge exponent is not evaluated (it could blow up); the equation is skipped, not failed.
    pytest.param("10 ^ 400 = 3 is skipped rather than evaluated", id="huge_power_skipped"),
    # A bare number before "=" that has more after it is read as a label ("Day 2 = 5 * 3 = 15"), so
    # "2 = 15" is never checked; only "5 * 3 = 15" is.
    pytest.param("2 = 5 * 3 = 15", id="leading_number_is_a_label"),
    # A fractional result stated as a whole number passes when it is within 1 of the value, rounded down
    # ("3 full boxes") or up ("needs 4 boxes"); the gate cannot tell which the sentence means.
    pytest.param("She fills 10/3 = 4 full boxes", id="whole_number_within_one"),
    # An expression that is a quantity "of" an earlier number is only the tail of the computation the
    # author meant (4 packs of 10 = 40), so "10 cupcakes x 10 = 40" is skipped.
    pytest.param("She needs to buy 4 packs of 10 cupcakes x 10 = 40 cupcakes", id="quantity_of_a_number_skipped"),
    # Units are words: only the numbers are checked, so 4 * 2 = 8 passes whatever "movies/day * hours/day" gives.
    pytest.param("each screen shows 4 movies/day * 2 hours/day = 8 movies/day", id="units_not_checked"),
]


@pytest.mark.parametrize("line", KNOWN_LENIENT)
def test_known_lenient_equations_pass_the_gate(line):
    """False as written, accepted by the gate: it skips what it cannot read reliably (huge powers, labels,
    tails of longer computations, units) and accepts whole-number roundings either way, rather than
    reject correct solutions written that way. The reasoning and final-answer checks still apply."""
    candidate = f"{line}\nTherefore the total is 72.\n#### 72"
    result = MathVerifier(match_reference_rounding=False)(candidate, "Worked steps.\n#### 72")
    assert result.passed, (result.reason, result.detail)


def test_a_wrong_equation_after_increased_by_fails():
    result = MathVerifier()(COW["rewrite"], COW["answer"], question=COW["question"])
    assert result.reason == "wrong_equation"
    assert result.detail == "200*$3=1500 does not hold (left side is 600)"
    # The expert answer writes the same shape correctly, and still passes.
    assert MathVerifier()(COW["answer"], COW["answer"], question=COW["question"]).passed


def test_a_rounded_result_needs_an_expert_answer_that_rounds():
    row = TRAIL_MIX
    result = MathVerifier()(row["rewrite"], row["answer"], question=row["question"])
    assert (result.reason, result.detail) == ("wrong_equation", "16/6=3 does not hold (left side is 2.66667)")
    # Without the rule it passes (the missing 18 aside, which gate 8 also checks).
    assert MathVerifier(match_reference_rounding=False, min_intermediate_recall=None)(row["rewrite"], row["answer"], question=row["question"]).passed
    # Where the expert rounds, a rewrite may round (in another place too).
    rounding_expert = "He fills 100 / 15 = 6 full boxes and one more for the rest, 6 + 1 = 7.\n#### 7"
    assert MathVerifier()("He makes 100 / 15 = 7 trips, 6 of them full.\n#### 7", rounding_expert).passed
    assert MathVerifier()("He makes 100 / 15 = 6.6 trips, so 6 + 1 = 7 in all.\n#### 7", rounding_expert).passed
    # 6.67 is 100 / 15 within the relative tolerance: not a rounding; 6.6 is one, and this expert does not round.
    exact_expert = "He makes 100 / 15 = 6.67 loads, so 6 + 1 = 7 trips.\n#### 7"
    assert MathVerifier()(exact_expert, exact_expert).passed
    assert MathVerifier()("He makes 100 / 15 = 6.6 trips, so 6 + 1 = 7 in all.\n#### 7", exact_expert).reason == "wrong_equation"


def test_equation_tolerance_is_configurable():
    candidate = "It is 100*3 = 301 meters, and 70 + 2 = 72 in all.\n#### 72"
    assert MathVerifier()(candidate, "#### 72").reason == "wrong_equation"
    assert MathVerifier(equation_rel_tol=1e-2)(candidate, "#### 72").passed


# ---------------------------------------------------------------------------------------------
# Repeated equations
# ---------------------------------------------------------------------------------------------


def test_an_equation_the_expert_repeats_may_be_repeated():
    expert = (
        "The cost of Dale's eggs is 2 × $3 = $<<2*3=6>>6.\nThe cost of Andrew's eggs is 2 × $3 = $<<2*3=6>>6.\n"
        "Their eggs cost $6 + $6 = $<<6+6=12>>12.\n#### 12"
    )
    candidate = "Dale's eggs cost 2 x 3 = 6 dollars.\nAndrew's eggs cost 2 x 3 = 6 dollars too.\nTogether 6 + 6 = 12.\n#### 12"
    assert MathVerifier()(candidate, expert).passed
    assert MathVerifier()(candidate, expert.replace("Andrew's eggs is 2 × $3", "Andrew's eggs is 3 × $2")).reason == (
        "repeated_equation"
    )


# The prompted rewriter's version of row 817, once in GOOD_REWRITES (test_math_verifier.py): "She buys
# 2 bags of beans per week because 2 x 8 = 16" borrows the next line's step instead of 21 / 10.5 = 2.
MADDIE_BORROWED_STEP = (
    "She uses 3 ounces of coffee per day because 2 x 1.5 = 3\n"
    "She uses 21 ounces of beans per week because 7 x 3 = 21\n"
    "She buys 2 bags of beans per week because 2 x 8 = 16\n"
    "She spends $16 on the beans per week because 2 x 8 = 16\n"
    "She spends $2 on the milk per week because 4 x (1/2) = 2\n"
    "She spends $18 per week on her coffee because 16 + 2 = 18\n#### 18"
)


def test_a_step_borrowed_from_the_next_line_fails_as_a_repeated_equation():
    row = TRAIN_800[817]
    result = MathVerifier()(MADDIE_BORROWED_STEP, row["answer"], question=row["question"])
    assert result.reason == "repeated_equation", (result.reason, result.detail)
    assert MathVerifier()(MADDIE_STEPS, row["answer"], question=row["question"]).passed
