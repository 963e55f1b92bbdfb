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
"""Explicit equations of a solution: where they are, whether they hold, what they state.

An equation is ``a op b (op c)* = r`` in the visible text or in a GSM8K annotation ``<<a*b=c>>``; a
running computation "5 + 3 = 8 * 2 = 16" gives two, and a line that is only ``r = a op b`` is read
backwards, and a chain "24 - 8 = 16 = 19" also states ``16 = 19``. Expressions that only continue something the
line does not show are skipped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import NamedTuple

from ..text_checks import ANNOTATION_RE, _close, strip_calculator_annotations
from .arithmetic import (
    _evaluate,
    _format_number,
    _has_operator,
    _has_percent,
    _is_range,
    _normalize_math_line,
    _Parser,
    _single_literal,
    _SkipEquation,
    _Tok,
    _tokenize_runs,
)

# Text right before an expression that makes it the tail of a longer one ("100 balls x (10/100)",
# "1 and 1/4 = ...", "14, 400 / 80").
# "by" continues only after a verb that multiplies or divides ("divided by 2 * 3"): after "increased by" or
# "cut by" the expression is the whole amount, and skipping it let "increased by 200*$3 = $1500" through (gate 8).
_CONTINUES_RE = re.compile(
    r"(?:^|[\s\d])(?:[xX*/+\-^\u00d7\u00f7\u00b7\u2212\u2013]|times|(?:divid|multipl|split|shar)\w*\s+by|per|\d\s+and|\d,)\s*$",
    re.IGNORECASE,
)
# "4 packs of 10 cupcakes x 10 = 40", "3/4 of 20 * 2 = 30": the expression is a quantity "of" an
# earlier number, so the visible part alone is not the computation the author meant.
_OF_A_NUMBER_RE = re.compile(r"\d%?(?:\s+[A-Za-z][\w'/-]*)?\s+of\s*\$?\s*$", re.IGNORECASE)
# "25 classmates + his 1 teacher + 1 himself = 27": an operator a word or two before the expression
# makes it the tail of a longer sum.
_OP_THEN_WORDS_RE = re.compile(r"(?:[+*\u00d7\u00f7]|\s[-/\u2212\u2013])\s*(?:[A-Za-z']+\s+){1,2}\$?$")
# Words right before an expression that change its meaning ("half of 48 + 10 = 34"): the visible
# part alone is not the equation the author meant.
_SCALING_WORDS = frozenset(
    "half halves twice double triple thrice quarter quarters third thirds fourth fourths fifth fifths "
    "times percent tenth tenths".split()
)

# "Weeks 1-2 = 10 hours" is a range with a label; "The total is 300-400 = 300" and "So 300-400 = 300" are
# subtractions that do not hold. A range needs its label: at the start of a line (after a connective) or
# after a verb that states a result, or after another "=", an ascending "a-b" is a subtraction (gate 9).
_RESULT_CONTEXT_RE = re.compile(
    r"(?:^|\b(?:is|are|was|were|be|been|equals?|so|then|thus|therefore|hence|gives?|makes?|leaves?|means|that's|"
    r"which's|totals?|altogether))\W*$",
    re.IGNORECASE,
)


class _Equation(NamedTuple):
    lhs_source: str  # the left side as written (for messages)
    lhs: tuple  # parsed left side
    rhs_options: tuple[tuple[tuple, str], ...]  # parsed right side(s), widest first, with their source


def _equations_in_line(line: str) -> Iterator[_Equation]:
    """Explicit equations ``a op b (op c)* = r`` of one line (annotations already removed)."""
    line = _normalize_math_line(line)
    for tokens, run_start in _tokenize_runs(line):
        eq_positions = [i for i, tok in enumerate(tokens) if tok.kind == "eq"]
        if not eq_positions:
            continue
        bounds = [-1, *eq_positions, len(tokens)]
        for k, eq in enumerate(eq_positions):
            left = tokens[bounds[k] + 1 : eq]
            right = tokens[eq + 1 : bounds[k + 2]]
            if not left or not right:
                continue
            if k == 0:
                before = line[:run_start]
                # Glued to a word or time ("2:30 + 2 = 4:30", "a5 + 3"): not a standalone expression.
                # A label is fine ("Buicks:12+8(26)=220").
                label = before.endswith(":") and before[-2:-1].isalpha()
                if before and not before[-1].isspace() and before[-1] not in "([\"'*~=>$" and not label:
                    continue
                if set(re.findall(r"[a-z]+", before.lower())[-2:]) & _SCALING_WORDS:
                    continue
                if _CONTINUES_RE.search(before) or _OF_A_NUMBER_RE.search(before) or _OP_THEN_WORDS_RE.search(before):
                    continue
                # "apples - 10 * 2 = 4": a detached leading minus continues something we cannot see.
                if left[0].kind == "op" and (left[0].value != "-" or len(left) < 2 or left[1].spaced):
                    continue
            # "192 / 1.2 = 1.2Y", "21/7 = 90/x", "3*30 = 30 + M": algebra, or a side cut by a word.
            after = line[right[-1].end : right[-1].end + 1]
            if right[-1].kind == "op" or after.isalpha() or any(t.code for t in (*left, *right)):
                continue
            if _is_range(left) and k == 0 and not _RESULT_CONTEXT_RE.search(line[:run_start]):
                continue
            lhs = _Parser(left).parse()
            if lhs is None:
                continue
            if not _has_operator(lhs):
                # "24 - 8 = 16 = 19": a chain of "=" states that the running result equals the next number; so does a line
                # that is only "32 = 160" (a number after a word is a label: "Day 2 = 5").
                bare = k == 0 and len(eq_positions) == 1 and not line[:run_start].strip(" \t$\u20ac\u00a3") and not line[right[-1].end :].strip(" .")
                if (k > 0 or bare) and len(left) == 1 and left[0].kind == "num" and len(right) == 1 and right[0].kind == "num":
                    yield _Equation(line[left[0].start : left[0].end], lhs, ((_Parser(right).parse(), line[right[0].start : right[0].end]),))
                    continue
                reversed_equation = _reversed_equation(line, run_start, left, right, lhs) if len(eq_positions) == 1 else None
                if reversed_equation is not None:
                    yield reversed_equation
                continue
            options: list[tuple[tuple, str]] = []
            full = _Parser(right).parse()
            if full is not None:
                options.append((full, line[right[0].start : right[-1].end]))
            # Running computations "5 + 3 = 8 * 2 = 16": the right side is its first number.
            sign = 1 if right[0].kind == "op" and right[0].value == "-" and len(right) > 1 else 0
            if len(right) > 1 + sign and right[sign].kind == "num":
                first = _Parser(right[: sign + 1]).parse()
                if first is not None:
                    options.append((first, line[right[0].start : right[sign].end]))
            if not options:
                continue
            if re.match(r"\s*(?:cents?\b|\u00a2)", line[right[-1].end :], re.IGNORECASE):
                # "$2.50 - $2.24 = 26 cents": dollars on the left, cents on the right.
                options.extend((("bin", "/", rhs, ("num", 100.0, False, 0)), src) for rhs, src in list(options))
            yield _Equation(line[left[0].start : tokens[eq].start].strip(), lhs, tuple(options))


def _reversed_equation(
    line: str, run_start: int, left: Sequence[_Tok], right: Sequence[_Tok], result: tuple
) -> _Equation | None:
    """``r = a op b`` (the run's only "=") read as ``a op b = r``, only where the line is nothing else.

    A number before "=" is usually a label or a running result ("Day 2 = 5 * 3 = 15"), so the
    reversed reading is taken only for a line that holds a bare number on the left of its one "="
    and an expression on its right: the shape of "14 = 14 * 105 + 840", which otherwise passed the
    equation check unread.
    """
    # "$11 = $10 * 10": a currency sign before the result is still nothing else.
    if line[:run_start].strip(" \t$\u20ac\u00a3") or line[right[-1].end :].strip(" ."):
        return None
    if len(left) != 1 or left[0].kind != "num" or right[0].kind == "op":
        return None
    expression = _Parser(right).parse()
    if expression is None or not _has_operator(expression):
        return None
    source = line[right[0].start : right[-1].end]
    return _Equation(source, expression, ((result, line[left[0].start : left[0].end]),))


def _equation_holds(lhs: tuple, rhs: tuple, rel_tol: float, rounding: bool = True) -> tuple[bool, float | None]:
    """Whether ``lhs = rhs`` holds under some reading of ``%`` (and, with ``rounding``, as a rounded result);
    returns (holds, left value)."""
    left_value: float | None = None
    modes = (False, True) if (_has_percent(lhs) or _has_percent(rhs)) else (False,)
    literal = _single_literal(rhs)
    for left_mode in modes:
        try:
            left = _evaluate(lhs, left_mode)
        except _SkipEquation:
            return True, None
        if left_value is None:
            left_value = left
        for right_mode in modes:
            try:
                right = _evaluate(rhs, right_mode)
            except _SkipEquation:
                return True, None
            if math.isclose(left, right, rel_tol=rel_tol, abs_tol=1e-9):
                return True, left
            scale = 0.01 if (literal is not None and literal[2] and right_mode) else 1.0
            decimals = literal[3] if literal is not None else 0
            if decimals > 0 and abs(left - right) <= 0.5 * 10.0**-decimals * scale * (1 + 1e-9):
                # Correctly rounded to the stated decimals ("100 / 15 = 6.67"): exact as written. A whole number
                # gets no such margin: "825 - .2 = 825" held within the old relative tolerance of 1e-3.
                return True, left
            if rounding and literal is not None:
                if decimals > 0:
                    # Rounded or truncated in the last stated place: "10/3 = 3.33", "2/3 = 0.66".
                    if abs(left - right) <= 10.0**-decimals * scale * (1 + 1e-9):
                        return True, left
                elif not _close(left, round(left)) and abs(left - right) < scale and _rounds_by_nature(lhs):
                    # A fractional result stated as a whole number: "10/3 = 3 full boxes".
                    return True, left
    return False, left_value


def _rounds_by_nature(node: tuple) -> bool:
    """Whether a whole number may stand for the value of ``node``: a quotient or a product ("10/3 = 3 full boxes",
    "25 * 1/3 = 8 students"), not a sum or difference, whose parts a reader would add exactly ("1/2+1 = 2 cookies",
    accepted by best-of-8 before gate 8)."""
    while node[0] in ("neg", "paren"):
        node = node[1]
    return node[0] == "bin" and node[1] in ("/", "*")


def _find_equations(text: str) -> Iterator[_Equation]:
    """Every explicit equation of ``text``: GSM8K annotations first, then the visible text."""
    for annotation in ANNOTATION_RE.finditer(text):
        yield from _equations_in_line(annotation.group(0)[2:-2])
    for line in strip_calculator_annotations(text).splitlines():
        if "=" in line:
            yield from _equations_in_line(line)


def _equation_lines(text: str) -> dict[tuple[str, str], set[int]]:
    """The visible equations of ``text`` (left side parsed, right side as written) and their lines."""
    lines: dict[tuple[str, str], set[int]] = {}
    for number, line in enumerate(strip_calculator_annotations(text).splitlines()):
        if "=" in line:
            for equation in _equations_in_line(line):
                key = (repr(equation.lhs), equation.rhs_options[-1][1].replace(" ", ""))
                lines.setdefault(key, set()).add(number)
    return lines


def _repeated_equation(text: str, reference: str) -> str | None:
    """The first equation ``text`` writes on two lines that ``reference`` does not repeat, or None."""
    repeated = [key for key, lines in _equation_lines(text).items() if len(lines) > 1]
    if not repeated:
        return None
    allowed = {key for key, lines in _equation_lines(reference).items() if len(lines) > 1}
    for key in repeated:
        if key not in allowed:
            for equation in _find_equations(text):
                if (repr(equation.lhs), equation.rhs_options[-1][1].replace(" ", "")) == key:
                    return f"{equation.lhs_source.strip()}={equation.rhs_options[-1][1].strip()}"
    return None


@lru_cache(maxsize=64)
def _states_rounded_results(text: str, rel_tol: float) -> bool:
    """Whether some equation of ``text`` holds only as a rounded result ("10/3 = 3.33", "75/15 = 5.5 = 6")."""
    for equation in _find_equations(text):
        exact = any(_equation_holds(equation.lhs, rhs, rel_tol, rounding=False)[0] for rhs, _ in equation.rhs_options)
        if not exact and any(_equation_holds(equation.lhs, rhs, rel_tol)[0] for rhs, _ in equation.rhs_options):
            return True
    return False


def _first_wrong_equation(text: str, rel_tol: float, rounding: bool = True) -> str | None:
    """Detail message for the first equation that does not hold (``rounding``: a rounded result holds), or None."""
    for equation in _find_equations(text):
        left_value: float | None = None
        for rhs, _source in equation.rhs_options:
            holds, value = _equation_holds(equation.lhs, rhs, rel_tol, rounding)
            if holds:
                break
            left_value = value
        else:
            # Report the narrowest reading ("5+3=9", not "5+3=9*2").
            shown = f"{equation.lhs_source}={equation.rhs_options[-1][1]}"
            if len(shown) <= 60:
                # Spaces go, except between two digits: a mixed number "1 1/2" must not read as 11/2.
                shown = re.sub(r"(?<!\d)\s+|\s+(?!\d)", "", shown)
            return f"{shown} does not hold (left side is {_format_number(left_value)})"
    return None


def _intermediate_results(text: str) -> list[float]:
    """Right-hand numbers of the equations of a solution (its intermediate results)."""
    values: list[float] = []
    for equation in _find_equations(text):
        # The narrowest reading that is a plain number ("= 24", not "= 24 * 2" or a cents conversion).
        literal = next((lit for rhs, _ in reversed(equation.rhs_options) if (lit := _single_literal(rhs))), None)
        if literal is not None:
            value = abs(literal[1])
            if not any(_close(value, v) for v in values):
                values.append(value)
    return values
