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
"""What a solution computes, and whether its final answer is one of those results.

:class:`~hf_patchdist.verifiers.math.MathVerifier` fails a final answer that the reasoning does not
arrive at (``"answer_not_derived"``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..text_checks import _close, _numbers_in, strip_calculator_annotations
from .arithmetic import (
    _evaluate,
    _has_operator,
    _has_percent,
    _is_range,
    _normalize_math_line,
    _Parser,
    _SkipEquation,
    _tokenize_runs,
)
from .equations import _equation_holds, _find_equations


def _bare_expressions(line: str) -> Iterator[tuple]:
    """Arithmetic expressions ``a op b`` of one line that are not part of an equation (parsed)."""
    for tokens, _run_start in _tokenize_runs(_normalize_math_line(line)):
        if any(tok.kind == "eq" for tok in tokens) or _is_range(tokens) or any(tok.code for tok in tokens):
            continue
        node = _Parser(tokens).parse()
        if node is not None and _has_operator(node):
            yield node


def _readings(node: tuple) -> list[float]:
    """Values of an expression under both readings of ``%`` (skipped ones left out)."""
    values = []
    for percent_as_fraction in (False, True) if _has_percent(node) else (False,):
        try:
            values.append(_evaluate(node, percent_as_fraction))
        except _SkipEquation:
            pass
    return values


def _assigned_values(line: str) -> Iterator[float]:
    """Values given to a one-letter unknown: "x = 2350", "p = $1000", "Y = 6/3", "20 = A"."""
    normalized = _normalize_math_line(line)
    for tokens, run_start in _tokenize_runs(normalized):
        eqs = [i for i, tok in enumerate(tokens) if tok.kind == "eq"]
        if not eqs:
            continue
        if eqs[0] == 0 and re.search(r"(?<![\w'\u2019.])[A-Za-z]\s*$", normalized[:run_start]):
            node = _Parser(tokens[1 : eqs[1] if len(eqs) > 1 else len(tokens)]).parse()
            if node is not None:
                yield from _readings(node)
        if eqs[-1] == len(tokens) - 1 and re.match(r"\s*[A-Za-z](?![\w'\u2019])", normalized[tokens[-1].end :]):
            node = _Parser(tokens[eqs[-2] + 1 if len(eqs) > 1 else 0 : eqs[-1]]).parse()
            if node is not None:
                yield from _readings(node)


# A number right after "=" that does not begin an expression: in "4/(1/8) = 4*8 = 32" the 4 after "=" is an operand of
# "4*8", not a result (it had passed as the derivation of a final answer 4 whose step, 32/8, was never written); nor is
# the 30 of "C = 30 * C", an expression in an unknown (gate 12: "C = 120 * C / C = 30 * C / #### 30" passed).
_AFTER_EQUALS_RE = re.compile(
    r"=\s*\$?\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)(?:\s?%)?|\.\d+)(?!\.?\d|,\d)(?!\s?%?\s*(?:[-+*/^×÷x]|times\b|plus\b|minus\b)\s*(?:[$(\d]|\.\d|[A-Za-z](?![\w'\u2019])))"
)


def _derived_results(text: str, rel_tol: float) -> list[float]:
    """What a solution computes.

    The right side of each equation (the readings that hold within ``rel_tol``, the verifier's ``equation_rel_tol``,
    or every reading when none does: a running computation, cents, ``%``), any
    number written right after "=", every value given to a one-letter unknown ("20 = A",
    "Y = 6/3"), and the value of the last arithmetic expression that is not part of an equation
    ("In all 48 + 24 clips").
    """
    values: list[float] = []
    for equation in _find_equations(text):
        # Of an equation's readings, those that hold: "4/(1/8) = 4*8" derives 32 (4*8), not 4 (its running-computation
        # reading, which is false). One that holds in no reading is wrong_equation's business; all its readings count.
        holding = [rhs for rhs, _source in equation.rhs_options if _equation_holds(equation.lhs, rhs, rel_tol)[0]]
        for rhs in holding or [rhs for rhs, _source in equation.rhs_options]:
            values.extend(_readings(rhs))
    # Any number written right after "=", whatever its left side ("Losses = 30", "10:00-00:00 = 10").
    for match in _AFTER_EQUALS_RE.finditer(text):
        values.extend(_numbers_in(match.group(1)))
    last: tuple | None = None
    for line in strip_calculator_annotations(text).splitlines():
        values.extend(_assigned_values(line))
        for node in _bare_expressions(line):
            last = node
    if last is not None:
        values.extend(_readings(last))
    return values


def _is_result(answer: float, value: float) -> bool:
    """Whether a computed ``value`` gives the final ``answer``.

    Sign aside; a fractional value may be rounded either way to a whole answer ("137.33 hours",
    so 138 hours); and a value may be given in hundredths (dollars for cents, a fraction for a
    percentage: ".25 more per can", so 25 cents).
    """
    answer, value = abs(answer), abs(value)
    for candidate in (value, value * 100):
        if _close(candidate, answer, rel_tol=1e-6):
            return True
        if _close(answer, round(answer)) and not _close(candidate, round(candidate)) and abs(candidate - answer) < 1:
            return True
    return False


_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90})


def _numbers_and_number_words(text: str) -> list[float]:
    words = re.findall(r"[a-z]+", text.lower())
    return _numbers_in(text) + [float(_NUMBER_WORDS[w]) for w in words if w in _NUMBER_WORDS]


def _stated_in_conclusion(body: str, answer: float, question: str | None) -> bool:
    """Whether the last line of ``body`` states ``answer`` (in digits or as a number word up to
    ninety) and the question does not write it in digits ("Thus, Brad's zip code is 11026.")."""
    lines = [line for line in strip_calculator_annotations(body).splitlines() if line.strip()]
    if not lines:
        return False
    known = _numbers_in(question) if isinstance(question, str) else []
    if any(_close(abs(answer), abs(k)) for k in known):
        return False
    return any(_close(abs(answer), abs(v)) for v in _numbers_and_number_words(lines[-1]))
