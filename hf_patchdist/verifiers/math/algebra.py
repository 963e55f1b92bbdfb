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
"""Algebra with one-letter unknowns: do the values a solution gives its unknowns solve its own equations?

The equation check reads arithmetic between numbers only, and a value given to an unknown ("x = 19") counts as
derived, so "3x + 7 = 27, so x = 19" passed the gate with an equation it never solved. Here every algebra
equation whose unknowns all get a value somewhere in the text is evaluated at those values.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import NamedTuple

from ..text_checks import strip_calculator_annotations
from .arithmetic import _evaluate, _normalize_math_line, _Parser, _SkipEquation, _tokenize_runs
from .grounding import UNIT_FACTORS, _singular

# Numbers, one-letter words, operators, parentheses and "=": the pieces of an algebra run. Longer words end a run.
_PIECE_RE = re.compile(
    r"(?P<num>\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)|(?P<word>[A-Za-z]+)|(?P<sym>[-+*/^()=\u00d7\u00f7\u00b7\u2212\u2013])|(?P<skip>[$\s])|(?P<other>.)"
)
_OPERATORS = frozenset("-+*/^\u00d7\u00f7\u00b7\u2212\u2013")
# Letters that are words or multiplication signs, never unknowns here.
_NOT_UNKNOWNS = frozenset({"a", "A", "I"})


class _Piece(NamedTuple):
    kind: str  # "num", "var", "op", "(", ")", "=", "word", "other"
    text: str


class _AlgebraEquation(NamedTuple):
    source: str
    sides: tuple[tuple[_Piece, ...], ...]  # two or more sides joined by "="
    unknowns: frozenset[str]


def _pieces(line: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    for match in _PIECE_RE.finditer(line):
        kind, text = match.lastgroup, match.group(0)
        if kind == "skip":
            continue
        if kind == "num":
            pieces.append(_Piece("num", text.replace(",", "")))
        elif kind == "word":
            glued = bool(pieces) and pieces[-1].kind == "num" and match.start() > 0 and line[match.start() - 1].isdigit()
            if len(text) == 1 and (text not in _NOT_UNKNOWNS or glued):
                pieces.append(_Piece("var", text))
            else:
                pieces.append(_Piece("word", text))
        elif kind == "sym":
            pieces.append(_Piece("op" if text in _OPERATORS else text, text))
        else:
            pieces.append(_Piece("other", text))
    return pieces


def _runs(line: str) -> list[list[_Piece]]:
    """Maximal runs of algebra pieces in ``line`` that are the whole computation written there.

    A run is dropped where a unit word cuts it ("30 feet / 6", "29 inches + 12 inches = 41": the run goes on after
    the word), where a unit with conversion factors follows an algebra equation ("3x = 1 hour" and later "x = 20
    minutes"; a value such as "x = 20 minutes" is kept), or where
    two numbers stand side by side (a mixed number "3 1/2 * B"). A number right after a word is a label ("section 2
    = x + 200"), not a side. An ``x`` between two numbers is a multiplication sign.
    """
    pieces = _pieces(line)
    runs: list[list[_Piece]] = []
    index = 0
    while index < len(pieces):
        if pieces[index].kind in ("word", "other"):
            index += 1
            continue
        start = index
        while index < len(pieces) and pieces[index].kind not in ("word", "other"):
            index += 1
        run = list(pieces[start:index])
        after = pieces[index : index + 2]
        if after and after[0].kind == "word":
            if len(after) > 1 and after[1].kind in ("op", "="):
                continue
            if _singular(after[0].text) in UNIT_FACTORS and any(_is_algebra_side(side) for side in _split_sides(run)):
                continue
        if any(a.kind == "num" and b.kind == "num" for a, b in zip(run, run[1:])):
            continue
        if start > 0 and pieces[start - 1].kind == "word" and len(run) > 2 and run[0].kind == "num" and run[1].kind == "=":
            run = run[2:]
        for i, piece in enumerate(run):
            if piece.kind == "var" and piece.text in "xX" and 0 < i < len(run) - 1 and run[i - 1].kind == "num" and run[i + 1].kind == "num":
                run[i] = _Piece("op", "*")
        runs.append(run)
    return runs


def _split_sides(run: list[_Piece]) -> list[tuple[_Piece, ...]]:
    sides: list[list[_Piece]] = [[]]
    for piece in run:
        if piece.kind == "=":
            sides.append([])
        else:
            sides[-1].append(piece)
    return [tuple(side) for side in sides]


def _is_algebra_side(side: tuple[_Piece, ...]) -> bool:
    """A side that computes with an unknown: "3x + 7", "2(x + 1)", "x/2" (not a bare "x")."""
    return any(p.kind == "var" for p in side) and len(side) > 1 and any(p.kind in ("num", "op", "(") for p in side)


def _algebra_in(text: str) -> tuple[list[_AlgebraEquation], dict[str, list[float]]]:
    """The algebra equations of ``text`` and the values it gives its unknowns ("x = 19", "19 = x", "x = 57 / 3 = 19")."""
    equations: list[_AlgebraEquation] = []
    values: dict[str, list[float]] = {}
    for line in strip_calculator_annotations(text).splitlines():
        for run in _runs(line):
            sides = [side for side in _split_sides(run) if side]
            # "a + b = 10" with "a" read as the article: a side cut at a word continues something unseen.
            if len(sides) < 2 or any((side[0].kind == "op" and side[0].text != "-") or side[-1].kind in ("op", "(") for side in sides):
                continue
            if any(_is_algebra_side(side) for side in sides):
                unknowns = frozenset(p.text for side in sides for p in side if p.kind == "var")
                equations.append(_AlgebraEquation(" = ".join(" ".join(p.text for p in side) for side in sides), tuple(sides), unknowns))
                continue
            # "x = 19", "19 = x", "x = 57 / 3 = 19": a value given to an unknown (the last number of the chain).
            bare = [side[0].text for side in sides if len(side) == 1 and side[0].kind == "var"]
            numbers = [side[0].text for side in sides if len(side) == 1 and side[0].kind == "num"]
            if len(bare) == 1 and numbers:
                values.setdefault(bare[0], []).append(float(numbers[-1]))
    return equations, values


def _side_value(side: tuple[_Piece, ...], values: dict[str, float]) -> float | None:
    """The value of one side with its unknowns replaced (implicit products "3x", "2(x + 1)" made explicit)."""
    parts: list[str] = []
    previous: _Piece | None = None
    for piece in side:
        implicit = previous is not None and previous.kind in ("num", "var", ")") and piece.kind in ("num", "var", "(")
        if implicit:
            parts.append("*")
        parts.append(f"({values[piece.text]!r})" if piece.kind == "var" else piece.text)
        previous = piece
    line = _normalize_math_line(" ".join(parts))
    runs = _tokenize_runs(line)
    if len(runs) != 1:
        return None
    tree = _Parser(runs[0][0]).parse()
    if tree is None:
        return None
    try:
        return _evaluate(tree, False)
    except (_SkipEquation, ArithmeticError, ValueError, OverflowError):
        return None


def _holds_for_no_value(equation: _AlgebraEquation, rel_tol: float) -> str | None:
    """Detail when ``equation`` (one unknown) is false whatever its unknown is ("x = 7 + x"), else None.

    The two sides differ by the same non-zero amount at three values of the unknown: the unknown cancels and what
    is left is a false statement between numbers. A rewrite that wrote "x = 7 + x" four times and then "#### 7"
    passed the gate (the trained rewriter, best-of-8 with the expert's equations shown; gate 10).
    """
    (letter,) = equation.unknowns
    differences = []
    for value in (1.0, 2.0, 3.0):
        sides = [_side_value(side, {letter: value}) for side in equation.sides]
        if any(side is None for side in sides):
            return None
        differences.append(sides[0] - sides[-1])
    # Float noise only: a relative tolerance would call "6A - 110000 = 250000" constant (its sides differ by
    # about 360,000 whatever A is, within 1e-3), and GSM8K train row 6368 writes exactly that.
    constant = all(math.isclose(d, differences[0], rel_tol=1e-9, abs_tol=1e-9) for d in differences[1:])
    if constant and not math.isclose(differences[0], 0.0, rel_tol=rel_tol, abs_tol=1e-6):
        return f"{equation.source} holds for no value of {letter}"
    return None


def first_unsolved_algebra(text: str, rel_tol: float = 1e-3) -> str | None:
    """Detail for the first algebra equation that the values ``text`` gives its unknowns do not solve, or None.

    An unknown given two different values fails first ("X = 2" and later "X = 12"). An equation whose one unknown
    gets no value is judged only where no value could solve it ("x = 7 + x"); otherwise there is nothing to check it
    against. ``rel_tol`` is looser than the equation check's: values given to unknowns are often rounded ("x = 20/3 =
    6.67").

    Example:
        ```python
        >>> first_unsolved_algebra("3x + 7 = 27, so x = 19.")
        '3 x + 7 = 27 does not hold for x = 19'
        >>> first_unsolved_algebra("3x + 7 = 64, so x = 19.") is None
        True
        ```
    """
    equations, values = _algebra_in(text)
    for letter, given in values.items():
        # "X = 6 / 3 = 2 ... X = 2 * 6 = 12": one unknown, two values. One GSM8K expert answer in 8,792 does it (and
        # that one is wrong); a rewrite doing it names different quantities alike or contradicts itself.
        other = next((v for v in given if not math.isclose(v, given[0], rel_tol=rel_tol, abs_tol=1e-6)), None)
        if other is not None:
            return f"{letter} is given two values, {given[0]:g} and {other:g}"
    for equation in equations:
        if len(equation.unknowns) == 1 and not equation.unknowns <= values.keys():
            contradiction = _holds_for_no_value(equation, rel_tol)
            if contradiction is not None:
                return contradiction
        if not equation.unknowns or not equation.unknowns <= values.keys():
            continue
        letters = sorted(equation.unknowns)
        tried = False
        for combination in itertools.product(*(values[letter] for letter in letters)):
            assignment = dict(zip(letters, combination))
            sides = [_side_value(side, assignment) for side in equation.sides]
            if any(value is None for value in sides):
                continue
            tried = True
            if all(math.isclose(sides[0], other, rel_tol=rel_tol, abs_tol=1e-6) for other in sides[1:]):
                break
        else:
            if tried:
                shown = ", ".join(f"{letter} = {values[letter][-1]:g}" for letter in letters)
                return f"{equation.source} does not hold for {shown}"
    return None
