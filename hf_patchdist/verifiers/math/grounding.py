# Copyright 2025 The hf-patchdist Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Whether every number a solution computes with comes from somewhere: the question, an earlier result of the
solution, or a common constant.

:class:`~hf_patchdist.verifiers.math.MathVerifier` fails a candidate that computes with a number it never derived
(``"ungrounded_operand"``): best-of-K selects candidates whose arithmetic holds but that take an intermediate result
out of the expert answer (which the rewriter sees) instead of computing it ("Tom saved $120, so he paid
$200 - $120 = $80", where the 120 is the expert's result of two steps the candidate skips).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from ..text_checks import ANNOTATION_RE, _close, _numbers_in, strip_calculator_annotations
from .arithmetic import _format_number, _has_operator, _normalize_math_line
from .derivation import _AFTER_EQUALS_RE, _assigned_values, _bare_expressions, _readings
from .equations import _equations_in_line

COMMON_CONSTANTS: tuple[float, ...] = (1, 2)
"""Numbers a solution may compute with without the question giving them: 1 and 2 (one more, a pair, both, the two
wheels of a bicycle). Every other factor must come from the question, its units included (:data:`UNIT_FACTORS`:
"a year" brings 12, 52 and 365, "a dozen" 12, "per day" 24). Measured on the 8,792 GSM8K expert answers: with
these two, 192 fail (2.18%); with 10, 12, 24, 7, 52 and 365 as constants too (the first version of gate 4), 172 -
but a 135M rewriter's best-of-32 samples then computed "12 cookies * $9 = $108" with the 12 (= 6 x 2) taken from
the expert answer and 12 passing as a constant (make demo, 3 of 26 acceptances). Without 2, 214 fail. 60, 100 and
1000 ground nothing a question's units do not bring, and as constants they let "He pays 1000*2" through."""

_NUMBER_WORD_VALUES: dict[str, tuple[float, ...]] = {
    **{
        word: (float(value),)
        for value, word in enumerate(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen twenty".split()
        )
    },
    **{word: (float(10 * tens),) for tens, word in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if tens >= 2},
    "hundred": (100.0,),
    "thousand": (1000.0,),
    "million": (1e6,),
    "billion": (1e9,),
    "once": (1.0,),
    "twice": (2.0,),
    "double": (2.0,),
    "doubles": (2.0,),
    "doubled": (2.0,),
    "pair": (2.0,),
    "pairs": (2.0,),
    "couple": (2.0,),
    "thrice": (3.0,),
    "triple": (3.0,),
    "triples": (3.0,),
    "tripled": (3.0,),
    "quadruple": (4.0,),
    "quadrupled": (4.0,),
    "half": (2.0, 0.5),
    "halves": (2.0, 0.5),
    "halved": (2.0, 0.5),
    "dozen": (12.0,),
    "dozens": (12.0,),
}
# Ordinals and fractions: "a third" is 3 and 1/3, "every fourth day" 4.
for _value, _word in enumerate("_ _ _ third fourth fifth sixth seventh eighth ninth tenth".split()):
    if _value >= 3:
        _NUMBER_WORD_VALUES[_word] = _NUMBER_WORD_VALUES[_word + "s"] = (float(_value), 1 / _value)
_NUMBER_WORD_VALUES["quarter"] = _NUMBER_WORD_VALUES["quarters"] = (4.0, 0.25)
_NUMBER_WORD_VALUES["first"] = (1.0,)
_NUMBER_WORD_VALUES["second"] = (2.0,)

# Conversion factors a unit word in the question brings with it ("quarts" and 32 ounces, "nickels" and 5 cents,
# "weekdays" and 5, "a day" and 24 hours): computing with them is a conversion, not a number taken from elsewhere.
# They ground as factors and as terms ("24 - 19 = 5 hours of free time" for "per day").
UNIT_FACTORS: dict[str, tuple[float, ...]] = {
    "second": (60.0, 3600.0),
    "minute": (60.0,),
    "hour": (60.0, 3600.0),
    "day": (24.0,),
    "year": (12.0, 52.0, 365.0),
    "dozen": (12.0,),
    "week": (7.0, 5.0),
    "weekday": (5.0,),
    "weekend": (2.0,),
    "month": (30.0, 31.0, 4.0),
    "decade": (10.0,),
    "century": (100.0,),
    "january": (31.0,), "february": (28.0, 29.0), "march": (31.0,), "april": (30.0,), "may": (31.0,),
    "june": (30.0,), "july": (31.0,), "august": (31.0,), "september": (30.0,), "october": (31.0,),
    "november": (30.0,), "december": (31.0,),
    "nickel": (5.0,), "dime": (10.0,), "quarter": (25.0, 4.0), "cent": (100.0,),
    "pound": (16.0,), "lb": (16.0,), "ounce": (16.0, 8.0, 32.0, 128.0), "oz": (16.0, 8.0, 32.0, 128.0), "ton": (2000.0,),
    "cup": (8.0, 16.0), "pint": (16.0, 2.0, 8.0), "quart": (32.0, 4.0, 2.0), "gallon": (128.0, 4.0, 8.0, 16.0),
    "percent": (100.0,), "percentage": (100.0,), "dollar": (100.0,),
    "gram": (1000.0,), "kilogram": (1000.0,), "kg": (1000.0,), "liter": (1000.0,), "litre": (1000.0,),
    "milliliter": (1000.0,), "ml": (1000.0,), "meter": (100.0, 1000.0), "metre": (100.0, 1000.0),
    "centimeter": (100.0,), "cm": (100.0,), "kilometer": (1000.0, 100.0), "km": (1000.0,),
    "thousand": (1000.0,), "million": (1000.0, 1e6), "watt": (1000.0,), "kilowatt": (1000.0,), "kw": (1000.0,),
    "kwh": (1000.0,),
    "foot": (12.0, 3.0), "feet": (12.0, 3.0), "inch": (12.0, 36.0), "yard": (3.0, 36.0), "mile": (5280.0, 1760.0),
}
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_SPAN_RE = re.compile(r"\b(" + "|".join(_DAYS) + r")s?\s*(?:through|thru|to|until|till|-|\u2013|\u2014)\s*(" + "|".join(_DAYS) + r")", re.IGNORECASE)
_FRACTION_RE = re.compile(r"(?<![\w.])(\d+)\s*/\s*(\d+)(?![\w.])")
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?)\s?%|(\d+(?:\.\d+)?)\s+percent\b", re.IGNORECASE)
_AND_A_HALF_RE = re.compile(r"(\d+(?:\.\d+)?|[a-z]+)\s+and\s+(?:a\s+)?half", re.IGNORECASE)
# A number and the unit word after it ("two weeks", "half-hour", "500 grams"); overlapping ("the half-hour").
_QUANTITY_RE = re.compile(r"(?=\b(\d+(?:\.\d+)?|[a-z]+)[\s-]+(?:an?\s+)?([a-z]+))", re.IGNORECASE)
_NON_ASCII_BESIDE_DIGIT_RE = re.compile(r"(?<=[^\x00-\x7f])(?=\d)|(?<=\d)(?=[^\x00-\x7f])")
_ONE_MORE_MAX = 12  # counts of people and things up to a dozen: one more (oneself) or one fewer (the rest)
_HOURS_AND_MINUTES_RE = re.compile(r"(\d+)\s*hours?\s*(?:and\s+)?(\d+)\s*min", re.IGNORECASE)
_TENS = {word: 10 * tens for tens, word in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if tens >= 2}
_UNITS_WORDS = {word: value for value, word in enumerate("zero one two three four five six seven eight nine".split())}
_TEENS = {word: value for value, word in enumerate("ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split(), start=10)}
_HUNDREDS_RE = re.compile(r"\b(\d)\s+hundred(?:\s+and)?(?:\s+(\d{1,2})\b)?", re.IGNORECASE)
_SPELLED_NUMBER_RE = re.compile(
    r"\b(?:(?P<tens>" + "|".join(_TENS) + r")(?:[\s-](?P<unit>" + "|".join(w for w in _UNITS_WORDS if w != "zero") + r"))?"
    r"|(?P<single>" + "|".join([*_UNITS_WORDS, *_TEENS]) + r"))\b",
    re.IGNORECASE,
)


def _spelled_out_as_digits(text: str) -> str:
    """``text`` with its number words written in digits ("forty-five frogs" -> "45 frogs", "twenty percent" ->
    "20 percent"), so that the rules for digits read them too."""

    def digits(match: re.Match[str]) -> str:
        if match.group("single"):
            word = match.group("single").lower()
            return str(_UNITS_WORDS.get(word, _TEENS.get(word)))
        return str(_TENS[match.group("tens").lower()] + _UNITS_WORDS.get((match.group("unit") or "zero").lower(), 0))

    text = _SPELLED_NUMBER_RE.sub(digits, text)
    # "one hundred forty-four" is now "1 hundred 44".
    return _HUNDREDS_RE.sub(lambda m: str(100 * int(m.group(1)) + int(m.group(2) or 0)), text)


def _singular(word: str) -> str:
    word = word.lower()
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def _word_value(word: str) -> tuple[float, ...]:
    """The values of a number written in digits or as a word ("2", "two", "half")."""
    if word[0].isdigit():
        return (float(word),)
    return _NUMBER_WORD_VALUES.get(word.lower(), ())


def question_values(question: str) -> list[float]:
    """The numbers a question gives: digits, number words ("three", "twice" and "double" 2, "half" 2 and 0.5, "a
    dozen" 12, "a third" 3 and 1/3, "one and a half" 1.5), fractions ("1/3" as 1, 3, 1/3 and 2/3), for a percentage
    ``p`` ``p``, ``p / 100``, and the rest and the increase it implies (30% gives 30, 0.3, 70, 0.7, 130 and 1.3),
    the conversion factors of the units it names (:data:`UNIT_FACTORS`), quantities in another unit ("two weeks"
    14 days, "half an hour" 30 minutes, "30 minutes" 0.5 hours, "4 feet" 48 inches, "500 grams" 0.5 kilograms, "1
    hour 20 minutes" 80), one more and one fewer than a count up to a dozen ("his 4 friends" and he are 5) and the days of the week it names (their count, "Monday to Friday" 5, and the rest of the
    week)."""
    words = re.findall(r"[a-z]+", question.lower())
    # "的48个朋友": a number written against a Han or Cyrillic letter is still a number.
    question = _spelled_out_as_digits(_NON_ASCII_BESIDE_DIGIT_RE.sub(" ", question))
    values = [abs(v) for v in _numbers_in(question)]
    for word in words:
        values.extend(_NUMBER_WORD_VALUES.get(word, ()))
        values.extend(UNIT_FACTORS.get(_singular(word), ()))
    for numerator, denominator in _FRACTION_RE.findall(question):
        if float(denominator):
            fraction = float(numerator) / float(denominator)
            values.extend((fraction, 1 - fraction))
    for match in _PERCENT_RE.finditer(question):
        percent = float(match.group(1) or match.group(2))
        values.extend((100.0, 0.01, percent, percent / 100, 100 - percent, 1 - percent / 100, 100 + percent, 1 + percent / 100))
    for match in _AND_A_HALF_RE.finditer(question):
        values.extend(v + 0.5 for v in _word_value(match.group(1)) or (1.0,))
    for match in _QUANTITY_RE.finditer(question):
        unit = _singular(match.group(2))
        for factor in UNIT_FACTORS.get(unit, ()):
            values.extend(x for v in _word_value(match.group(1)) if v < 1e6 for x in (v * factor, v / factor))
    for hours, minutes in _HOURS_AND_MINUTES_RE.findall(question):
        values.append(60 * float(hours) + float(minutes))
    days = {day for day in _DAYS if day in words or day + "s" in words}
    if days:
        values.extend((float(len(days)), float(7 - len(days))))
    for first, last in _DAY_SPAN_RE.findall(question):
        span = (_DAYS.index(last.lower()) - _DAYS.index(first.lower())) % 7 + 1
        values.extend((float(span), float(7 - span)))
    # One more or one fewer: "Jack and his 4 friends" share by 5, "twice as many" makes 3 parts, "five phones" have
    # 4 additional ones.
    values.extend(v + delta for v in list(values) if 1 <= v <= _ONE_MORE_MAX and _close(v, round(v)) for delta in (-1.0, 1.0))
    return values


_SENTENCE_SPLIT_RE = re.compile(r"\n+|(?<=[.!?;])\s+")
# A one-letter unknown beside an operator or "=" ("x + 3x = 20", "X = $1200", "11/20*X"): an algebra line, whose
# numbers come from rearranging an equation, not from a chain of computed results.
_UNKNOWN_RE = re.compile(
    r"[-+*/=(]\s*\$?\d*(?![xX]\s+\d)[A-Za-z](?![\w'\u2019])|(?<![\w'\u2019.])\d*[A-Za-z]\s*(?:[-+*/=)]|\^)"
)


def _operands(node: tuple, factor: bool = False) -> Iterator[tuple[tuple, bool]]:
    """The number leaves of a parsed expression (``("num", value, percent, decimals)``), each with whether it is a
    factor or divisor (an operand of ``*``, ``/`` or ``^``) rather than a term of a sum."""
    if node[0] == "num":
        yield node, factor
    elif node[0] == "bin":
        multiplies = node[1] in "*/^"
        yield from _operands(node[2], multiplies)
        yield from _operands(node[3], multiplies)
    else:
        yield from _operands(node[1], factor)


def _matches(target: float, value: float, decimals: int) -> bool:
    """Whether an operand written with ``decimals`` decimals is ``value``, rounded, truncated or rounded up to them
    (a derived 3.3333 written 3.33 or 3, 0.6666 written 0.67, 4.2 boxes written 5)."""
    if _close(target, value, 1e-6):
        return True
    if _close(value, round(value)):
        return False
    scale = 10.0**decimals
    return any(_close(target, f(value * scale) / scale, 1e-9) for f in (round, math.floor, math.ceil))


def _is_grounded(operand: tuple, factor: bool, known: list[float], constants: tuple[float, ...], hundredfold: bool) -> bool:
    """Whether an operand is one of the ``known`` values (as written or rounded to its own decimals, a percentage
    also as a fraction, with ``hundredfold`` dollars for cents and percentages as numbers: ``x100``, ``/100``), or one of the ``constants`` (as
    written; beyond 1 and 2 only as a factor or divisor: they convert units, "48 + 24" takes no 24 hours)."""
    _, value, percent, decimals = operand
    targets = {abs(value), abs(value) / 100} if percent else {abs(value)}
    scales = (1, 100, 0.01) if hundredfold else (1,)
    for target in targets:
        if any(_close(target, c) for c in constants if factor or c <= 2):
            return True
        if any(_matches(target, k * scale, decimals) for k in known for scale in scales):
            return True
    return False


# Cents (coins named too) and percentages: the reasons to read a known value times or divided by 100 (0.25 dollars
# for a quarter, a derived 60 written .6).
_HUNDREDFOLD_RE = re.compile(r"\b(?:cents?|penny|pennies|nickels?|dimes?|quarters?|percent)\b|%|\u00a2", re.IGNORECASE)


def first_ungrounded_operand(body: str, question: str, constants: tuple[float, ...] = COMMON_CONSTANTS) -> str | None:
    """The first operand of an arithmetic step of ``body`` (a solution's reasoning) that is neither given by the
    ``question`` (:func:`question_values`), nor a result derived before it, nor one of ``constants`` (beyond 1 and
    2 only as a factor or divisor); a message naming the number and its step, or None when every operand is
    grounded.

    Steps are read sentence by sentence, in order: the equations of each sentence (GSM8K ``<<...>>`` annotations
    included, the visible equations as :class:`~hf_patchdist.verifiers.math.MathVerifier` checks them) and its
    arithmetic expressions outside an equation; the other steps of the same sentence count as before a step. A
    step's results (every reading of its right side, and the numbers written there: "2/12 = 1/6" gives 6), the
    numbers written right after an "=" and the values given to a one-letter unknown are known from then on:
    "5 + 3 = 8 * 2 = 16" computes with the 8 it derived. A sentence of algebra (a one-letter unknown beside an
    operator or "=": "11/20*X - 120 = 540") is not checked, and its numbers are known from then on: rearranging an
    equation derives numbers without writing each computation.
    """
    known = question_values(question)
    # Without cents or percentages, "x100, /100" grounded numbers by accident: "20 hours" brings 1200 minutes, and 1200 /
    # 100 let "20-12 = 8" through with the 12 (= 10 + 2) done in the head (gate 12; an RFT training rewrite of the
    # committed rewriter); "$1.2" let "120*6" through with 100 * 1.2 never written.
    hundredfold = bool(_HUNDREDFOLD_RE.search(question) or _HUNDREDFOLD_RE.search(body))
    for sentence in _SENTENCE_SPLIT_RE.split(body):
        visible = strip_calculator_annotations(sentence)
        if "=" in visible and _UNKNOWN_RE.search(_normalize_math_line(visible)):
            known.extend(abs(v) for v in _numbers_in(visible))
            continue
        # The sentence's steps: (left side or expression, what it computes, how to show it).
        steps: list[tuple[tuple, list[float], str]] = []
        equations = [eq for note in ANNOTATION_RE.finditer(sentence) for eq in _equations_in_line(note.group(0)[2:-2])]
        if "=" in visible:
            equations.extend(_equations_in_line(visible))
        for equation in equations:
            if not _has_operator(equation.lhs):
                continue  # a link of a chain, "= 16 = 16": it states a result, it computes nothing
            # The right side's readings and numbers ("2/12 = 1/6" gives 6).
            results = [abs(v) for rhs, _ in equation.rhs_options for v in (*_readings(rhs), *(o[0][1] for o in _operands(rhs)))]
            steps.append((equation.lhs, results, f"{equation.lhs_source.strip()} = {equation.rhs_options[-1][1].strip()}"))
        for node in _bare_expressions(visible):
            steps.append((node, [abs(v) for v in _readings(node)], _normalize_math_line(visible).strip()))
        for index, (expression, _results, shown) in enumerate(steps):
            # The sentence's other steps count as before it: "$200 + $30 = $230" after "2 * $100 + 3 * $10" in the
            # same sentence, or an annotation read before the visible text around it.
            step_known = [*known, *(v for other, step in enumerate(steps) if other != index for v in step[1])]
            for operand, factor in _operands(expression):
                if not _is_grounded(operand, factor, step_known, constants, hundredfold):
                    return f"{_format_number(operand[1])} in {shown!r} is neither in the question nor derived before"
        known.extend(v for step in steps for v in step[1])
        known.extend(abs(v) for v in _numbers_in(" ".join(m.group(1) for m in _AFTER_EQUALS_RE.finditer(visible))))
        known.extend(abs(v) for v in _assigned_values(visible))
    return None
