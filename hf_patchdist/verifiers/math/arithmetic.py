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
"""Arithmetic of one line: normalisation, tokenizer, parser and evaluator.

A line is normalised (LaTeX, bold markers, word operators, rates, unit words, list markers), split
into runs of arithmetic tokens, parsed by a recursive-descent parser (``+ - * / ^``, parentheses,
unary signs, implicit products) into nested tuples, and evaluated with ``%`` read either as a number
or as a fraction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from .units import _strip_units

_LATEX_SUBS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\\[\[\]()]"), " "),
    (re.compile(r"\\left|\\right"), ""),
    (re.compile(r"\\(?:times|cdot|ast)(?![A-Za-z])"), " * "),
    (re.compile(r"\\div(?![A-Za-z])"), " / "),
    (re.compile(r"\\text\s*\{([^{}]*)\}"), r" \1 "),
    (re.compile(r"\{,\}"), ","),
    (re.compile(r"\\[,!; ]"), ""),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\\$"), "$"),
    (re.compile(r"\\approx|\\neq|\\ne(?![A-Za-z])|\\leq?|\\geq?"), " ~ "),
    (re.compile(r"\\(?:boxed|fbox)\s*(?=\{)"), ""),  # "48 + 24 = \boxed{72}": the box reads as parentheses
)
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_WORD_OPS_RE = re.compile(
    r"(?<=[\d)%])\s+(times|multiplied\s+by|plus|minus|divided\s+by)\s+(?=[$(\d.])", re.IGNORECASE
)
_WORD_OP_SYMBOL = {"times": "*", "multiplied by": "*", "plus": "+", "minus": "-", "divided by": "/"}
_RATE_SUFFIX_RE = re.compile(r"(?<=\d)/[A-Za-z]{2,}(?:/[A-Za-z]+)*(?![\w'])")
_ELLIPSIS_PERCENT_RE = re.compile(r"(\d)(?:\.{2,}|\u2026)(\s?%)")
_LIST_MARKER_RE = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s+")

_TOKEN_RE = re.compile(
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d{1,3}(?: \d{3})+(?![\d,])|\d+)(?:\.\d+)?|\.\d+)(?P<pct>\s?%)?"
    r"|(?P<op>[-+*/^\u00d7\u00f7\u00b7\u2212\u2013])"
    r"|(?P<x>[xX])"
    r"|(?P<lp>[(\[{])"
    r"|(?P<rp>[)\]}])"
    r"|(?P<eq>=)"
    r"|(?P<skip>[$\u20ac\u00a3\s])"
    r"|(?P<other>.)"
)
_OP_SYMBOL = {"\u00d7": "*", "\u00f7": "/", "\u00b7": "*", "\u2212": "-", "\u2013": "-", "x": "*", "X": "*"}


class _Tok(NamedTuple):
    kind: str  # "num", "op", "lp", "rp", "eq"
    value: Any  # float for numbers (with pct flag and decimals), operator symbol otherwise
    start: int
    end: int
    spaced: bool  # whitespace (or "$") right before it
    pct: bool = False
    decimals: int = 0
    code: bool = False  # "0900": a clock time or code, not a quantity


class _SkipEquation(Exception):
    """The expression cannot be evaluated sensibly (division by zero, huge power...)."""


def _normalize_math_line(line: str) -> str:
    line = line.replace("**", " ").replace("__", " ")
    for pattern, replacement in _LATEX_SUBS:
        line = pattern.sub(replacement, line)
    for _ in range(3):  # nested \frac
        new = _FRAC_RE.sub(r"((\1)/(\2))", line)
        if new == line:
            break
        line = new
    line = _ELLIPSIS_PERCENT_RE.sub(r"\1\2", line)  # "8.333...%": a rounded percentage
    line = _RATE_SUFFIX_RE.sub("", line)  # "$300/day": a rate, not a division by a word
    line = _strip_units(line)
    line = _WORD_OPS_RE.sub(lambda m: f" {_WORD_OP_SYMBOL[' '.join(m.group(1).lower().split())]} ", line)
    return _LIST_MARKER_RE.sub(" ", line)


def _tokenize_runs(line: str) -> list[tuple[list[_Tok], int]]:
    """Split a line into maximal runs of arithmetic tokens; returns (tokens, run start index)."""
    runs: list[tuple[list[_Tok], int]] = []
    current: list[_Tok] = []
    run_start = 0
    spaced = True
    raw = list(_TOKEN_RE.finditer(line))
    for index, match in enumerate(raw):
        kind = match.lastgroup
        if kind == "pct":  # a number followed by "%": lastgroup names the inner group
            kind = "num"
        if kind == "x":
            # "x" multiplies only between operands ("3 x 4", "4x5"), never inside a word or "2x + 3".
            before = line[match.start() - 1] if match.start() > 0 else " "
            after = line[match.end()] if match.end() < len(line) else " "
            prev_tok = current[-1] if current else None
            nxt = next((m for m in raw[index + 1 :] if m.lastgroup != "skip"), None)
            if (
                not before.isalpha()
                and not after.isalpha()
                and prev_tok is not None
                and prev_tok.kind in ("num", "rp")
                and nxt is not None
                and nxt.lastgroup in ("num", "pct", "lp")
            ):
                current.append(_Tok("op", "*", match.start(), match.end(), spaced))
                spaced = False
                continue
            kind = "other"
        if kind == "skip":
            spaced = True
            continue
        if kind == "other":
            if current:
                runs.append((current, run_start))
            current = []
            spaced = False
            continue
        if not current:
            run_start = match.start()
        if kind == "num":
            literal = match.group("num").replace(" ", "")
            decimals = len(literal.split(".")[1]) if "." in literal else 0
            current.append(
                _Tok(
                    "num",
                    float(literal.replace(",", "")),
                    match.start(),
                    match.end(),
                    spaced,
                    pct=match.group("pct") is not None,
                    decimals=decimals,
                    code=len(literal) > 1 and literal[0] == "0" and literal[1].isdigit(),
                )
            )
        elif kind == "op":
            current.append(
                _Tok("op", _OP_SYMBOL.get(match.group(0), match.group(0)), match.start(), match.end(), spaced)
            )
        else:
            current.append(_Tok(kind, match.group(0), match.start(), match.end(), spaced))
        spaced = False
    if current:
        runs.append((current, run_start))
    return [trimmed for tokens, start in runs if (trimmed := _without_unmatched_parentheses(tokens, start))[0]]


def _without_unmatched_parentheses(tokens: list[_Tok], start: int) -> tuple[list[_Tok], int]:
    """A run without the parentheses of a remark around it: "(28 items * 100% = 28 items)" gives the run "(28 * 100% =
    28", whose left side did not parse, so the equation was skipped unread (gate 12). Only an opening parenthesis at the
    start with more openings than closings, and a closing one at the end with more closings, are dropped."""
    # Openings minus closings: each parenthesis dropped from an end moves it one towards balance.
    balance = sum(t.kind == "lp" for t in tokens) - sum(t.kind == "rp" for t in tokens)
    first, last = 0, len(tokens)
    while balance > 0 and first < last and tokens[first].kind == "lp":
        first, balance = first + 1, balance - 1
    while balance < 0 and first < last and tokens[last - 1].kind == "rp":
        last, balance = last - 1, balance + 1
    trimmed = tokens[first:last]
    return trimmed, trimmed[0].start if first and trimmed else start


class _Parser:
    """Recursive-descent parser for ``+ - * / ^``, parentheses, unary signs, implicit products."""

    def __init__(self, tokens: Sequence[_Tok]) -> None:
        self.tokens = tokens
        self.pos = 0

    def parse(self) -> tuple | None:
        if not self.tokens:
            return None
        try:
            node = self._expr()
        except (IndexError, ValueError):
            return None
        return node if self.pos == len(self.tokens) else None

    def _peek(self) -> _Tok | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _expr(self) -> tuple:
        node = self._term()
        while (tok := self._peek()) is not None and tok.kind == "op" and tok.value in "+-":
            self.pos += 1
            node = ("bin", tok.value, node, self._term())
        return node

    def _term(self) -> tuple:
        node = self._unary()
        while (tok := self._peek()) is not None:
            if tok.kind == "op" and tok.value in "*/":
                self.pos += 1
                node = ("bin", tok.value, node, self._tight_fraction(tok) or self._unary())
            elif tok.kind == "lp" or (tok.kind == "num" and self.tokens[self.pos - 1].kind == "rp"):
                # 2(3+4) and (3+4)2; two bare numbers in a row stay a parse error (a mixed number "1 1/2" is one atom).
                node = ("bin", "*", node, self._unary())
            else:
                break
        return node

    def _tight_fraction(self, operator: _Tok) -> tuple | None:
        """``60 / 3/4``: a fraction written without spaces after a spaced operator is one number."""
        toks = self.tokens[self.pos : self.pos + 3]
        if (
            len(toks) == 3
            and operator.value == "/"
            and (operator.spaced or toks[0].spaced)
            and toks[0].kind == "num"
            and toks[1].kind == "op"
            and toks[1].value == "/"
            and toks[2].kind == "num"
            and not toks[1].spaced
            and not toks[2].spaced
        ):
            self.pos += 3
            return (
                "paren",
                (
                    "bin",
                    "/",
                    ("num", toks[0].value, toks[0].pct, toks[0].decimals),
                    ("num", toks[2].value, toks[2].pct, toks[2].decimals),
                ),
            )
        return None

    def _unary(self) -> tuple:
        tok = self._peek()
        if tok is not None and tok.kind == "op" and tok.value in "+-":
            self.pos += 1
            operand = self._unary()
            return ("neg", operand) if tok.value == "-" else operand
        return self._power()

    def _power(self) -> tuple:
        node = self._atom()
        tok = self._peek()
        if tok is not None and tok.kind == "op" and tok.value == "^":
            self.pos += 1
            node = ("bin", "^", node, self._unary())
        return node

    def _mixed_number(self, whole: _Tok) -> tuple | None:
        """``1 1/2`` (a whole number, a space, a proper fraction written tight) as one number, else None.

        Two numbers side by side were a parse error, so an equation with a mixed number on its left side was
        skipped unread: "21 * 1 1/2 = 21 birds" passed the gate (the trained rewriter's best-of-8, gate 10).
        """
        toks = self.tokens[self.pos : self.pos + 3]
        if len(toks) != 3 or [t.kind for t in toks] != ["num", "op", "num"] or toks[1].value != "/":
            return None
        numerator, slash, denominator = toks
        if not numerator.spaced or slash.spaced or denominator.spaced:
            return None
        if any(t.pct or t.decimals or t.code for t in (whole, numerator, denominator)):
            return None
        if not 0 < numerator.value < denominator.value:
            return None
        self.pos += 3
        fraction = ("bin", "/", ("num", numerator.value, False, 0), ("num", denominator.value, False, 0))
        return ("paren", ("bin", "+", ("num", whole.value, False, 0), ("paren", fraction)))

    def _atom(self) -> tuple:
        tok = self._peek()
        if tok is None:
            raise ValueError("unexpected end")
        if tok.kind == "num":
            self.pos += 1
            return self._mixed_number(tok) or ("num", tok.value, tok.pct, tok.decimals)
        if tok.kind == "lp":
            self.pos += 1
            node = self._expr()
            closing = self._peek()
            if closing is None or closing.kind != "rp":
                raise ValueError("unbalanced parenthesis")
            self.pos += 1
            return ("paren", node)
        raise ValueError(f"unexpected token {tok.value!r}")


def _has_operator(node: tuple) -> bool:
    if node[0] == "bin":
        return True
    if node[0] in ("neg", "paren"):
        return _has_operator(node[1])
    return False


def _is_literal_value(node: tuple, value: float) -> bool:
    literal = _single_literal(node)
    return literal is not None and literal[0] == "num" and not literal[2] and literal[1] == value


def _without_identities(node: tuple) -> tuple:
    """``node`` with every identity operation removed: ``a + 0``, ``0 + a``, ``a - 0``, ``a * 1``,
    ``1 * a``, ``a / 1``, ``a ^ 1`` become ``a``."""
    kind = node[0]
    if kind == "num":
        return node
    if kind in ("neg", "paren"):
        return (kind, _without_identities(node[1]))
    _, op, left, right = node
    left, right = _without_identities(left), _without_identities(right)
    if (op in "+-" and _is_literal_value(right, 0.0)) or (op in "*/^" and _is_literal_value(right, 1.0)):
        return left
    if (op == "+" and _is_literal_value(left, 0.0)) or (op == "*" and _is_literal_value(left, 1.0)):
        return right
    return ("bin", op, left, right)


def _is_identity(node: tuple) -> bool:
    """An expression whose every operation is an identity (``72 + 0``, ``72 * 1``, ``(72 / 1) + 0``): it computes nothing."""
    return _has_operator(node) and not _has_operator(_without_identities(node))


def _only_identity_arithmetic(line: str) -> bool:
    """Whether the arithmetic of a normalised line is identities only ("72 + 0 = 72", "So 72 * 1 = 72"),
    at least one: a line that computes nothing is no reasoning step."""
    found = False
    for tokens, _run_start in _tokenize_runs(line):
        if any(tok.code for tok in tokens):
            continue  # "10:00-00:00": clock times, not "00 - 0"
        bounds = [-1, *(i for i, tok in enumerate(tokens) if tok.kind == "eq"), len(tokens)]
        for start, end in zip(bounds, bounds[1:]):
            node = _Parser(tokens[start + 1 : end]).parse()
            if node is None or not _has_operator(node):
                continue
            if not _is_identity(node):
                return False
            found = True
    return found


def _single_literal(node: tuple) -> tuple | None:
    """The number node of ``12``, ``-12`` or ``(12)``, else None."""
    if node[0] == "num":
        return node
    if node[0] in ("neg", "paren"):
        return _single_literal(node[1])
    return None


def _has_percent(node: tuple) -> bool:
    if node[0] == "num":
        return node[2]
    if node[0] == "bin":
        return _has_percent(node[2]) or _has_percent(node[3])
    return _has_percent(node[1])


def _evaluate(node: tuple, percent_as_fraction: bool) -> float:
    kind = node[0]
    if kind == "num":
        return node[1] / 100 if (node[2] and percent_as_fraction) else node[1]
    if kind == "neg":
        return -_evaluate(node[1], percent_as_fraction)
    if kind == "paren":
        return _evaluate(node[1], percent_as_fraction)
    _, op, left_node, right_node = node
    left, right = _evaluate(left_node, percent_as_fraction), _evaluate(right_node, percent_as_fraction)
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        if right == 0:
            raise _SkipEquation
        return left / right
    # "^": refuse anything that could blow up instead of evaluating it.
    if abs(right) > 64 or (abs(left) > 1e6 and right > 4) or (left < 0 and not float(right).is_integer()):
        raise _SkipEquation
    try:
        return float(left**right)
    except (OverflowError, ZeroDivisionError) as err:
        raise _SkipEquation from err


def _format_number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _is_range(tokens: Sequence[_Tok]) -> bool:
    """``3-4`` (no spaces, ascending): a range such as "Weeks 1-2", not a subtraction."""
    return (
        len(tokens) == 3
        and tokens[0].kind == "num"
        and tokens[1].kind == "op"
        and tokens[1].value == "-"
        and tokens[2].kind == "num"
        and not tokens[1].spaced
        and not tokens[2].spaced
        and tokens[0].value < tokens[2].value
    )
