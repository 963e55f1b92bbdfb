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

import re
from collections.abc import Iterator

from ..text_checks import ANNOTATION_RE, _close, _numbers_in, strip_calculator_annotations
from .arithmetic import _format_number, _normalize_math_line
from .derivation import _AFTER_EQUALS_RE, _assigned_values, _bare_expressions, _readings
from .equations import _equations_in_line

COMMON_CONSTANTS: tuple[float, ...] = (1, 2, 10, 100, 1000, 60, 24, 7, 12, 52, 365)
"""Numbers a solution may compute with without the question giving them: 1 and 2 (one more, twice, halves, a pair),
10, 100 and 1000 (tens, percentages, cents per dollar, grams per kilogram), 60 (minutes per hour, seconds per
minute), 24 (hours per day), 7 (days per week), 12 (months per year, items per dozen, inches per foot), 52 (weeks per
year) and 365 (days per year)."""

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
# "weekdays" and 5): computing with them is a conversion, not a number taken from elsewhere. Hours, days, weeks and
# years are in COMMON_CONSTANTS.
UNIT_FACTORS: dict[str, tuple[float, ...]] = {
    "minute": (60.0,),
    "second": (60.0, 3600.0),
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
    "foot": (12.0, 3.0), "feet": (12.0, 3.0), "inch": (12.0, 36.0), "yard": (3.0, 36.0), "mile": (5280.0, 1760.0),
}
# Multiples of a time unit: "two weeks" is 14 days, "half an hour" 30 minutes.
_TIME_UNITS: dict[str, tuple[float, ...]] = {"minute": (60.0,), "hour": (60.0,), "day": (24.0,), "week": (7.0,), "month": (30.0, 4.0), "year": (12.0, 52.0, 365.0)}
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_SPAN_RE = re.compile(r"\b(" + "|".join(_DAYS) + r")s?\s*(?:through|thru|to|until|till|-|\u2013|\u2014)\s*(" + "|".join(_DAYS) + r")", re.IGNORECASE)
_FRACTION_RE = re.compile(r"(?<![\w.])(\d+)\s*/\s*(\d+)(?![\w.])")
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?)\s?%|(\d+(?:\.\d+)?)\s+percent\b", re.IGNORECASE)
_AND_A_HALF_RE = re.compile(r"(\d+(?:\.\d+)?|[a-z]+)\s+and\s+(?:a\s+)?half", re.IGNORECASE)
_QUANTITY_RE = re.compile(r"(\d+(?:\.\d+)?|[a-z]+)[\s-]+(?:an?\s+)?([a-z]+)", re.IGNORECASE)


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
    the conversion factors of the units it names (:data:`UNIT_FACTORS`), multiples of a time unit ("two weeks" 14,
    "half an hour" 30) and the days of the week it names (their count, "Monday to Friday" 5, and the rest of the
    week)."""
    values = [abs(v) for v in _numbers_in(question)]
    words = re.findall(r"[a-z]+", question.lower())
    for word in words:
        values.extend(_NUMBER_WORD_VALUES.get(word, ()))
        values.extend(UNIT_FACTORS.get(_singular(word), ()))
    for numerator, denominator in _FRACTION_RE.findall(question):
        if float(denominator):
            fraction = float(numerator) / float(denominator)
            values.extend((fraction, 1 - fraction))
    for match in _PERCENT_RE.finditer(question):
        percent = float(match.group(1) or match.group(2))
        values.extend((percent, percent / 100, 100 - percent, 1 - percent / 100, 100 + percent, 1 + percent / 100))
    for match in _AND_A_HALF_RE.finditer(question):
        values.extend(v + 0.5 for v in _word_value(match.group(1)) or (1.0,))
    for match in _QUANTITY_RE.finditer(question):
        for factor in _TIME_UNITS.get(_singular(match.group(2)), ()):
            values.extend(v * factor for v in _word_value(match.group(1)) if v < 1000)
    days = {day for day in _DAYS if day in words or day + "s" in words}
    if days:
        values.extend((float(len(days)), float(7 - len(days))))
    for first, last in _DAY_SPAN_RE.findall(question):
        span = (_DAYS.index(last.lower()) - _DAYS.index(first.lower())) % 7 + 1
        values.extend((float(span), float(7 - span)))
    return values


# A one-letter unknown beside an operator or "=" ("x + 3x = 20", "X = $1200", "11/20*X"): an algebra line, whose
# numbers come from rearranging an equation, not from a chain of computed results.
_UNKNOWN_RE = re.compile(
    r"[-+*/=(]\s*\$?\d*(?![xX]\s+\d)[A-Za-z](?![\w'\u2019])|(?<![\w'\u2019.])\d*[A-Za-z]\s*(?:[-+*/=)]|\^)"
)


def _operands(node: tuple) -> Iterator[tuple]:
    """The number leaves of a parsed expression (``("num", value, percent, decimals)``)."""
    if node[0] == "num":
        yield node
    elif node[0] == "bin":
        yield from _operands(node[2])
        yield from _operands(node[3])
    else:
        yield from _operands(node[1])


def _is_grounded(operand: tuple, known: list[float]) -> bool:
    """Whether an operand is one of the ``known`` values: as written or rounded to its own decimals, a percentage
    also as a fraction, and dollars for cents (``x100``, ``/100``)."""
    _, value, percent, decimals = operand
    candidates = {abs(value)}
    if percent:
        candidates.add(abs(value) / 100)
    for target in candidates:
        for k in known:
            for scaled in (k, k * 100, k / 100):
                if _close(target, scaled, 1e-6):
                    return True
                # A derived 3.3333 written as 3.33 or 3; 0.6666 as 0.67.
                if not _close(scaled, round(scaled)) and abs(target - scaled) < 10.0**-decimals * (1 + 1e-9):
                    return True
    return False


def first_ungrounded_operand(body: str, question: str, constants: tuple[float, ...] = COMMON_CONSTANTS) -> str | None:
    """The first operand of an arithmetic step of ``body`` (a solution's reasoning) that is neither given by the
    ``question`` (:func:`question_values`), nor a result derived before it, nor one of ``constants``; a message
    naming the number and its step, or None when every operand is grounded.

    Steps are read line by line, in order: the equations of each line (GSM8K ``<<...>>`` annotations included, the
    visible equations as :class:`~hf_patchdist.verifiers.math.MathVerifier` checks them), then its arithmetic
    expressions outside an equation. A step's results (every reading of its right side), the numbers written right
    after an "=" and the values given to a one-letter unknown are known from then on: "5 + 3 = 8 * 2 = 16" computes
    with the 8 it derived.
    """
    known = [*question_values(question), *constants]
    for raw_line in body.splitlines():
        visible = strip_calculator_annotations(raw_line)
        if "=" in visible and _UNKNOWN_RE.search(_normalize_math_line(visible)):
            known.extend(abs(v) for v in _numbers_in(visible))
            continue
        equations = [eq for note in ANNOTATION_RE.finditer(raw_line) for eq in _equations_in_line(note.group(0)[2:-2])]
        if "=" in visible:
            equations.extend(_equations_in_line(visible))
        # What each equation of the line states: its right side's readings and numbers ("2/12 = 1/6" gives 6).
        results = [
            [abs(v) for rhs, _source in eq.rhs_options for v in (*_readings(rhs), *(o[1] for o in _operands(rhs)))]
            for eq in equations
        ]
        for index, equation in enumerate(equations):
            # The line's other equations count as before it: an annotation is read before the visible text around it.
            line_known = [*known, *(v for other, values in enumerate(results) if other != index for v in values)]
            for operand in _operands(equation.lhs):
                if not _is_grounded(operand, line_known):
                    shown = f"{equation.lhs_source.strip()} = {equation.rhs_options[-1][1].strip()}"
                    return f"{_format_number(operand[1])} in {shown!r} is neither in the question nor derived before"
        known.extend(v for values in results for v in values)
        known.extend(abs(v) for v in _numbers_in(" ".join(m.group(1) for m in _AFTER_EQUALS_RE.finditer(visible))))
        known.extend(abs(v) for v in _assigned_values(visible))
        for node in _bare_expressions(visible):
            for operand in _operands(node):
                if not _is_grounded(operand, known):
                    return f"{_format_number(operand[1])} in {_normalize_math_line(visible).strip()!r} is neither in the question nor derived before"
            known.extend(abs(v) for v in _readings(node))
    return None
