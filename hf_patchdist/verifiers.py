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
"""Task-consistency gate: decide whether a rewritten target still solves the task.

A rewrite is kept only when it passes a verifier; otherwise the expert answer is kept (the
Generate-Verify-Fallback stage) and, during GRPO, the candidate gets ``r_task = 0``.

Checking only the final answer is not enough: with a small rewriter most "correct" rewrites of a
GSM8K solution were bare answers ("The answer is 40."), wrong arithmetic on the way to the right
number, or the instruction echoed after the answer. Short generic text has a low NLL under the
base model, so the distribution reward would even prefer them. Every verifier therefore runs some
generic checks first (empty, truncated, talks about the rewriting, echoes the instruction, text
after the final answer, copies the question, repeats a line: a GRPO-trained rewriter learned to
lengthen its rewrites with question text and repeated steps, which are cheap under the base model),
and :class:`MathVerifier` additionally checks every explicit equation,
requires explicit arithmetic steps, a final answer that the reasoning arrives at, and a minimum
length.

Reason codes (``VerificationResult.reason``):

- generic, in this order: ``"empty"``, ``"truncated"``, ``"trailing_text"`` (strict mode only),
  ``"mentions_rewriting"``, ``"echoes_instruction"``, ``"restates_question"`` (copies more of the
  question than allowed), ``"repeated_line"``, then the reference checks ``"invalid_reference"`` /
  ``"reference_without_final_answer"``;
- answer checks: ``"no_final_answer"``, ``"wrong_final_answer"``;
- math only, in this order: ``"wrong_equation"`` (an explicit equation does not hold),
  ``"repeated_equation"`` (the same equation on two lines, where the expert's does not repeat it),
  ``"no_reasoning"`` (no arithmetic step), ``"answer_not_derived"`` (the final answer is not the
  result of the reasoning), ``"too_short"``, ``"missing_intermediate_results"``;
- :class:`CallableVerifier`: ``"rejected"`` unless the callable gives its own reason.

Final-answer lines and ``final_answer_end(text, final=False)``: a final-answer line is *complete*
when it is terminated by a newline (``final=False``, the default, used on partially generated text)
or when the text ends (``final=True``, used on finished text). ``"#### 7"`` without a newline is
therefore not complete while generating (the model may still be writing ``"72"``). Markers have a
priority: a ``####`` line beats a ``\\boxed{}`` line, which beats a "The answer is X" line; while a
stronger marker could still follow a weaker one (the next line has not started yet, or starts with
``#``, ``\\``, ``$``, ``*``, ``(`` or ``[`` and is not finished), the weaker line is not reported as
complete, so a rewrite ending "The answer is 72.\\n#### 72" keeps its ``####`` line.
"""

from __future__ import annotations

import abc
import importlib
import inspect
import json
import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple

__all__ = [
    "DEFAULT_META_PHRASES",
    "VERIFIERS",
    "CallableVerifier",
    "ChoiceVerifier",
    "ExactMatchVerifier",
    "MathVerifier",
    "RegexVerifier",
    "VerificationResult",
    "Verifier",
    "extract_math_answer",
    "get_verifier",
    "math_answers_equal",
]


GRPO_GATE: dict[str, Any] = {"name": "math", "strict": True, "max_reference_copy": 0.9}
"""The default gate of GRPO training: strict (trimming trailing text in the reward would still
train on it) and failing near-verbatim copies of the expert answer, the cheapest feasible
candidate, which GRPO otherwise converges on."""

DEFAULT_META_PHRASES: tuple[str, ...] = (
    "original solution",
    "original answer",
    "original response",
    "original text",
    "original explanation",
    "original reasoning",
    "original version",
    "rewrite",
    "rewrites",
    "rewritten",
    "rewrote",
    "rewriting",
    "rephrase",
    "rephrased",
    "rephrasing",
    "paraphrase",
    "paraphrased",
    "paraphrasing",
    "expert answer",
    "expert's answer",
    "expert solution",
    "expert's solution",
    "reference answer",
    "reference solution",
    "given solution",
    "provided solution",
    "provided answer",
    "in my own words",
    "in your own words",
    "in our own words",
)
"""Phrases (case-insensitive, whole words) that betray text about the rewriting task itself."""


# --------------------------------------------------------------------------------------------
# Result type
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of one verification.

    Args:
        passed: Whether the candidate keeps the task.
        reason: ``""`` when passed, else a short snake_case code (see the module docstring).
        text: The candidate as it should be kept: stripped and, in non-strict mode, without the
            text after its final-answer line.
        detail: Human-readable explanation, e.g. ``"3*2*5=15 does not hold (left side is 30)"``.
    """

    passed: bool
    reason: str
    text: str
    detail: str = ""

    def __bool__(self) -> bool:
        return self.passed


def _fail(reason: str, text: str, detail: str = "") -> VerificationResult:
    return VerificationResult(passed=False, reason=reason, text=text, detail=detail)


# --------------------------------------------------------------------------------------------
# Small text helpers
# --------------------------------------------------------------------------------------------

_ANNOTATION_RE = re.compile(r"<<[^<>\n]*>>")
_NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])(?:\s?%)?|(?<![\w.])\.\d+")
_WORD_RE = re.compile(r"\S+")


def _strip_annotations(text: str) -> str:
    """Remove GSM8K calculator annotations ``<<48/2=24>>``."""
    return _ANNOTATION_RE.sub("", text)


def _word_count(text: str) -> int:
    return len(_WORD_RE.findall(_strip_annotations(text)))


def _numbers_in(text: str) -> list[float]:
    """Every number written in ``text`` (thousands separators understood; ``50%`` gives 50 and 0.5)."""
    values: list[float] = []
    for match in _NUMBER_RE.finditer(text):
        literal = match.group(0)
        percent = literal.endswith("%")
        try:
            value = float(literal.rstrip("% ").replace(",", ""))
        except ValueError:
            continue
        values.append(value)
        if percent:
            values.append(value / 100)
    return values


def _close(a: float, b: float, rel_tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)


def _line_end(text: str, pos: int, final: bool) -> int | None:
    """Index just after the newline ending the line that holds ``pos`` (see module docstring)."""
    newline = text.find("\n", pos)
    if newline == -1:
        return len(text) if final else None
    return newline + 1


def _normalize_phrase_text(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").replace("\u2018", "'").lower().split())


@lru_cache(maxsize=64)
def _phrase_regex(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    parts = []
    for phrase in phrases:
        words = _normalize_phrase_text(phrase).split()
        if words:
            parts.append(r"\s+".join(re.escape(w) for w in words))
    if not parts:
        return None
    # Longest first so that the reported phrase is the most specific one.
    parts.sort(key=len, reverse=True)
    return re.compile(r"(?<![\w'])(?:" + "|".join(parts) + r")(?![\w'])")


def _normalize_words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.replace("\u2019", "'").lower())


@lru_cache(maxsize=16)
def _instruction_ngrams(instruction: str, n: int) -> frozenset[tuple[str, ...]]:
    words = _normalize_words(instruction)
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _normalize_words(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _shared_runs(source: str, text: str, n: int) -> tuple[float, int]:
    """How much ``text`` copies ``source`` verbatim, in runs of at least ``n`` words.

    Returns:
        The fraction of ``source``'s words inside such runs, and the number of ``text``'s words
        inside them (normalised words: case and punctuation ignored).
    """
    source_words, text_words = _normalize_words(source), _normalize_words(text)
    source_grams = [tuple(source_words[i : i + n]) for i in range(len(source_words) - n + 1)]
    text_grams = [tuple(text_words[i : i + n]) for i in range(len(text_words) - n + 1)]
    shared = set(source_grams) & set(text_grams)
    if not shared:
        return 0.0, 0

    def covered(grams: list[tuple[str, ...]], length: int) -> int:
        mask = [False] * length
        for i, gram in enumerate(grams):
            if gram in shared:
                mask[i : i + n] = [True] * n
        return sum(mask)

    return covered(source_grams, len(source_words)) / len(source_words), covered(text_grams, len(text_words))


def _repeated_line(text: str, min_words: int) -> str | None:
    """The first line of at least ``min_words`` words that occurs twice (normalised words), or None."""
    seen: set[tuple[str, ...]] = set()
    for line in _strip_annotations(text).splitlines():
        words = tuple(_normalize_words(line))
        if len(words) < min_words:
            continue
        if words in seen:
            return " ".join(words)
        seen.add(words)
    return None


def _normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = re.sub(r"[^\w\s]", " ", text)
    text = re.sub(r"\b(?:a|an|the)\b", " ", text)
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------
# Final-answer lines
# --------------------------------------------------------------------------------------------


class _FinalLine(NamedTuple):
    """A located final-answer line."""

    kind: str  # "hash", "boxed" or "answer_is"
    start: int  # where the marker begins: the text before it is the reasoning
    end: int  # just after the line's newline (or len(text) for an unterminated final line)
    answer: str


# A final-answer line is one of several "kinds", tried from the strongest to the weakest. Each
# kind yields, in text order, (marker start, position on the answer's line, function giving the
# answer from the complete line or None when that line turns out not to be a final-answer line).
# ``anchor`` is None when the marker is still open (an unclosed ``\boxed{``).
class _Hit(NamedTuple):
    start: int
    anchor: int | None
    answer: Callable[[int], str | None]


_Kind = Callable[[str], Iterator[_Hit]]
_STRONGER_LINE_STARTS = "#\\$*(["


def _weak_line_complete(text: str, end: int, final: bool) -> bool:
    """Whether a weak final-answer line ending at ``end`` can no longer be overtaken."""
    if final:
        return True
    j = end
    while j < len(text) and text[j].isspace():
        j += 1
    if j >= len(text):
        return False  # nothing after it yet: a "#### 72" line may follow
    if text[j] in _STRONGER_LINE_STARTS and text.find("\n", j) == -1:
        return False  # the next line may still become a stronger marker
    return True


def _locate_final_line(text: str, kinds: Sequence[tuple[str, _Kind, bool]], final: bool) -> _FinalLine | None | bool:
    """Find the final-answer line; ``False`` means "a marker is there but not complete yet"."""
    for name, kind, weak in kinds:
        for hit in kind(text):
            if hit.anchor is None:  # unclosed marker
                if final:
                    continue
                return False
            end = _line_end(text, hit.anchor, final)
            if end is None:
                return False
            answer = hit.answer(end)
            if answer is None:
                continue
            if weak and not _weak_line_complete(text, end, final):
                return False
            return _FinalLine(name, hit.start, end, answer)
    return None


def _find_closing_brace(text: str, open_pos: int) -> int | None:
    """Index of the ``}`` matching the ``{`` at ``open_pos`` (nested braces), or None."""
    depth = 0
    for i in range(open_pos, len(text)):
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _boxed_spans(text: str) -> Iterator[tuple[int, int | None, str | None]]:
    """(start, index of the closing brace or None, content or None) for every ``\\boxed{``."""
    for match in _BOXED_RE.finditer(text):
        close = _find_closing_brace(text, match.end() - 1)
        if close is None:
            yield match.start(), None, None
        else:
            yield match.start(), close, text[match.end() : close].strip()


def _boxed_kind(accept: Callable[[str], str | None]) -> _Kind:
    def kind(text: str) -> Iterator[_Hit]:
        for start, close, content in _boxed_spans(text):
            if close is None:
                yield _Hit(start, None, lambda end: None)
            else:
                yield _Hit(start, close, lambda end, c=content: accept(c))

    return kind


def _regex_kind(pattern: re.Pattern[str], accept: Callable[[re.Match[str], str], str | None]) -> _Kind:
    """A kind whose marker is a regex; ``accept(match, rest_of_line)`` validates the complete line."""

    def kind(text: str) -> Iterator[_Hit]:
        for match in pattern.finditer(text):

            def answer(end: int, m: re.Match[str] = match) -> str | None:
                rest = text[m.end() : end].rstrip("\n")
                return accept(m, rest)

            yield _Hit(match.start(), match.end(), answer)

    return kind


# --- math markers -----------------------------------------------------------------------------

_MATH_NUMBER = r"-?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?:\s?%)?|-?\.\d+"
_MATH_HASH_RE = re.compile(r"####[ \t]*(?P<ans>[^\n]*)")
_MATH_ANSWER_IS_RE = re.compile(
    r"(?i)\b(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)\s*:?[ \t*$]*"
    r"(?P<ans>" + _MATH_NUMBER + r"|\\d?frac\{[^{}\n]*\}\{[^{}\n]*\})"
)
# What may follow the number on a "The answer is 72 clips." line: a few words, no digits, no clause.
_ANSWER_REST_RE = re.compile(
    r"^[\s.!*$)\]}]*(?P<words>[A-Za-z][A-Za-z'\-]*(?:\s+[A-Za-z][A-Za-z'\-]*){0,3})?[\s.!*$)\]}]*$"
)
_CLAUSE_WORDS = frozenset(
    "because since but if so as not when however which that and or than then we i you it while "
    "although though unless until".split()
)


def _short_rest(rest: str) -> bool:
    match = _ANSWER_REST_RE.match(rest)
    if match is None:
        return False
    words = (match.group("words") or "").lower().split()
    return not any(w in _CLAUSE_WORDS for w in words)


def _clean_answer(answer: str) -> str:
    return answer.strip().strip("*").strip().rstrip(".!").strip()


def _accept_math_hash(match: re.Match[str], rest: str) -> str | None:
    answer = _clean_answer(match.group("ans"))
    # "#### Step 1: ..." and "#### 1. Compute the cost" are Markdown headings, not GSM8K answer lines.
    if (
        not re.match(r"[-+$\\(.{\d]", answer)
        or not re.search(r"[\d\\]", answer)
        or len(answer.split()) > 4
        or re.match(r"\d+[.)]\s+[A-Z]", answer)
    ):
        return None
    return answer


def _accept_math_answer_is(match: re.Match[str], rest: str) -> str | None:
    if not _short_rest(rest):
        return None
    return _clean_answer(match.group("ans"))


def _accept_math_boxed(content: str) -> str | None:
    return content or None


_MATH_KINDS: tuple[tuple[str, _Kind, bool], ...] = (
    ("hash", _regex_kind(_MATH_HASH_RE, _accept_math_hash), False),
    ("boxed", _boxed_kind(_accept_math_boxed), True),
    ("answer_is", _regex_kind(_MATH_ANSWER_IS_RE, _accept_math_answer_is), True),
)
_LOOSE_ANSWER_IS_RE = re.compile(
    r"(?i)\banswer\s*(?:is|:|=)\s*:?[ \t*$]*(?P<ans>" + _MATH_NUMBER + r"|\\d?frac\{[^{}\n]*\}\{[^{}\n]*\})"
)


def extract_math_answer(text: str) -> str | None:
    """Final answer of a math text.

    Tried in order: the GSM8K ``#### n`` line, the last ``\\boxed{...}`` (nested braces), the last
    "the answer is X", and as a last resort the last number in the text.

    Args:
        text: A solution.

    Returns:
        The answer as written (e.g. ``"72"``, ``"\\frac{1}{2}"``, ``"$1,000"``), or None.

    Example:
        ```python
        >>> extract_math_answer("Natalia sold 48+24 = 72 clips.\\n#### 72")
        '72'
        >>> extract_math_answer("So the total is \\\\boxed{\\\\frac{1}{2}}.")
        '\\\\frac{1}{2}'
        ```
    """
    if not isinstance(text, str) or not text.strip():
        return None
    for match in _MATH_HASH_RE.finditer(text):
        answer = _accept_math_hash(match, "")
        if answer is not None:
            return answer
    boxed = [content for _, close, content in _boxed_spans(text) if content]
    if boxed:
        return boxed[-1]
    answer_is = list(_LOOSE_ANSWER_IS_RE.finditer(text))
    if answer_is:
        return _clean_answer(answer_is[-1].group("ans"))
    numbers = list(_NUMBER_RE.finditer(_strip_annotations(text)))
    if numbers:
        return numbers[-1].group(0).strip()
    return None


# --------------------------------------------------------------------------------------------
# Math answer equivalence
# --------------------------------------------------------------------------------------------

_PLAIN_NUMBER_RE = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?$")


def _numeric_value(answer: str) -> tuple[float, bool] | None:
    """Value of a plainly numeric answer, and whether it carried units/percent/LaTeX decoration."""
    original = answer
    text = answer.strip()
    boxed = re.fullmatch(r"\\boxed\s*\{(.*)\}", text)
    if boxed:
        text = boxed.group(1).strip()
    text = re.sub(r"\\text\s*\{([^{}]*)\}", r" \1 ", text)
    text = text.replace("\\$", "$").replace("\\%", "%").replace("{,}", ",").replace("\\,", "").replace("\\!", "")
    text = text.strip().strip("$").strip().rstrip(".").strip()
    text = re.sub(r"^\$\s*", "", text)
    text = re.sub(r"^(-)\s*\$\s*", r"\1", text)
    frac = re.fullmatch(r"(-)?\\[dt]?frac\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}", text)
    if frac is None:
        frac = re.fullmatch(r"(-)?\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)", text)
    if frac is not None:
        denominator = float(frac.group(3))
        if denominator == 0:
            return None
        value = float(frac.group(2)) / denominator
        return (-value if frac.group(1) else value), True
    unit = re.fullmatch(r"(.*?\d)\s*(%|[A-Za-z][A-Za-z .'/-]*)", text)
    if unit is not None:
        text = unit.group(1)
    if not text or not _PLAIN_NUMBER_RE.match(text) or not re.search(r"\d", text):
        return None
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return None
    return value, text != original.strip()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _math_verify_equal(a: str, b: str) -> bool:
    try:
        from math_verify import parse, verify
    except ImportError:  # pragma: no cover - math-verify is a declared dependency
        return False
    # math_verify's timeouts use SIGALRM, which only the main thread may set.
    timeout = 5 if _in_main_thread() else None
    try:
        gold = parse(b, parsing_timeout=timeout) or parse(f"${b}$", parsing_timeout=timeout)
        target = parse(a, parsing_timeout=timeout) or parse(f"${a}$", parsing_timeout=timeout)
        if not gold or not target:
            return False
        return bool(verify(gold, target, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 - any parser failure means "not shown equal"
        return False


def math_answers_equal(a: str, b: str) -> bool:
    """Whether two final answers are mathematically equivalent.

    Plain numbers are compared numerically first (``"72"``, ``"72.0"``, ``"$72"``, ``"72 dollars"``,
    ``"1,000"`` vs ``"1000"``, ``"50%"`` vs ``"50"``); anything else (and decorated numbers the
    numeric test rejects) goes through ``math_verify.parse``/``verify`` (``"\\frac{144}{2}"``,
    ``"50%"`` vs ``"0.5"``). The two are equal if either test says so.

    Args:
        a: One answer (e.g. the candidate's).
        b: The other answer (e.g. the reference's; used as math_verify's gold).

    Returns:
        True when equivalent.

    Example:
        ```python
        >>> math_answers_equal("\\\\frac{144}{2}", "72")
        True
        >>> math_answers_equal("$1,000", "1000.0")
        True
        ```
    """
    if not isinstance(a, str) or not isinstance(b, str) or not a.strip() or not b.strip():
        return False
    if a.strip() == b.strip():
        return True
    num_a, num_b = _numeric_value(a), _numeric_value(b)
    if num_a is not None and num_b is not None:
        if _close(num_a[0], num_b[0]):
            return True
        if not num_a[1] and not num_b[1]:
            return False  # two bare numbers that differ: math_verify cannot disagree
    return _math_verify_equal(a, b)


# --------------------------------------------------------------------------------------------
# Arithmetic equations
# --------------------------------------------------------------------------------------------

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
# Unit words between a number and an operator or "=": "6 screens * 8 movies/day = 48 movies/day",
# "8 hours/day / 2 hours/day = 4". A unit is one or two words (two letters or more, not a function
# word), each possibly a unit fraction ("movies/day"), optionally with "per X"/"a X" ("5 dollars per
# hour * 8"), right after a number or "%" and followed by an operator (symbol or word) or "=" and a
# number. Such units are removed before the line is tokenized, so "hours/day" is a unit, never a
# division by a word. See _strip_units for when they are kept.
_UNIT_STOP_WORDS = (
    "x times multiplied divided plus minus by of and or is are was were be so then that which to from than "
    "if but because since as the into equals equal makes make gives give per a an"
)
_UNIT_WORD = r"(?!(?:" + _UNIT_STOP_WORDS.replace(" ", "|") + r")(?![\w'/-]))[A-Za-z][A-Za-z'&\-]+(?:/[A-Za-z]+)*"
# Written against the number: "330km", "110km/hour" (not "2nd", nor "2x"); "$100/day" is already
# "$100" (_RATE_SUFFIX_RE).
_ATTACHED_UNIT = r"(?<=\d)(?!(?:st|nd|rd|th)\b)[A-Za-z]{2,}(?:/[A-Za-z]+)*"
_UNITS_RE = re.compile(
    r"(?<=[\d%\u20ac\u00a3])(?P<units>(?:" + _ATTACHED_UNIT + r")?(?:\s+(?:(?:per|a|an)\s+)?" + _UNIT_WORD
    + r"(?:\s+" + _UNIT_WORD + r")?(?:\s+(?:per|a|an)\s+" + _UNIT_WORD + r")?)?)(?<=[A-Za-z&'-])"
    r"(?P<gap>\s*)(?P<op>[-+*/=\u00d7\u00f7\u00b7\u2212\u2013]|[xX](?=\s)"
    r"|(?:times|multiplied\s+by|plus|minus|divided\s+by)(?=\s))"
    r"(?=\s*[$\u20ac\u00a3]?\s*(?:\d|\.\d|\())",
    re.IGNORECASE,
)
# A computation on the left of "=" ("2*6", "8 / 2", "4 x 3"); a tight "1/2" is a quantity.
_COMPUTATION_RE = re.compile(
    r"(?:\d%?|\))\s*(?:[-+*^\u00d7\u00f7\u00b7\u2212\u2013]|\s/|/\s|\s[xX]\s|(?<=\d)[xX](?=\d)"
    r"|\s(?:times|plus|minus|multiplied\s+by|divided\s+by)\s)\s*\$?\s*(?:\d|\.\d|\()",
    re.IGNORECASE,
)
_CLAUSE_BREAK_RE = re.compile(r"=|[.;:!?](?:\s|$)|,\s")
# Measurement units that an addition or subtraction must not mix ("4 pounds - 6 ounces = 58 ounces").
_MEASURES = {
    unit: family
    for family, units in {
        "mass": "pound lb ounce oz kilogram kg gram",
        "length": "mile yard foot feet ft inch meter metre centimeter cm kilometer km millimeter mm",
        "time": "second minute min hour hr day week month year decade century",
        "money": "dollar cent penny pennies nickel dime quarter",
        "volume": "gallon quart pint cup liter litre milliliter ml tablespoon teaspoon",
    }.items()
    for unit in units.split()
}
_MEASURE_SYNONYMS = {"feet": "foot", "lbs": "lb", "hrs": "hr", "mins": "min", "pennies": "penny", "inches": "inch"}


def _measure(units: str) -> tuple[str, str] | None:
    """(family, base unit) of the first word of a unit ("hours/day" -> ("time", "hour")), or None."""
    word = units.split()[0].split("/")[0].lower()
    word = _MEASURE_SYNONYMS.get(word, word)
    for candidate in (word, word[:-1] if word.endswith("s") else word, word[:-2] if word.endswith("es") else word):
        if candidate in _MEASURES:
            return _MEASURES[candidate], candidate
    return None


def _strip_units(line: str) -> str:
    """Remove unit words between numbers and operators (see _UNITS_RE), except where unsafe.

    Kept: a unit before a tight ``/`` ("3 degrees/5%" is a rate, not a division); a unit before
    "=" whose left side is a single quantity ("1/2 a cup = 4 ounces" is a conversion); units of
    the same measure but different sizes around ``+``/``-`` ("4 pounds - 6 ounces").
    """
    matches = list(_UNITS_RE.finditer(line))
    if not matches:
        return line
    out: list[str] = []
    last = 0
    for i, match in enumerate(matches):
        op = match.group("op").lower()
        keep = False
        if op == "/" and not match.group("gap"):
            keep = True
        elif op == "=":
            left = "".join(out) + line[last : match.start()]
            keep = not _COMPUTATION_RE.search(_CLAUSE_BREAK_RE.split(left)[-1])
        elif op in ("+", "-", "\u2212", "\u2013", "plus", "minus") and i + 1 < len(matches):
            following = matches[i + 1]
            if re.fullmatch(r"\s*\$?\s*[\d.,]+%?", line[match.end() : following.start()]):
                this, that = _measure(match.group("units")), _measure(following.group("units"))
                keep = this is not None and that is not None and this[0] == that[0] and this[1] != that[1]
        out.append(line[last : match.end("units")] if keep else line[last : match.start()])
        last = match.end("units")
    out.append(line[last:])
    return "".join(out)


_RATE_SUFFIX_RE = re.compile(r"(?<=\d)/[A-Za-z]{2,}(?:/[A-Za-z]+)*(?![\w'])")
_ELLIPSIS_PERCENT_RE = re.compile(r"(\d)(?:\.{2,}|\u2026)(\s?%)")
_LIST_MARKER_RE = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s+")
# Text right before an expression that makes it the tail of a longer one ("100 balls x (10/100)",
# "1 and 1/4 = ...", "14, 400 / 80").
_CONTINUES_RE = re.compile(
    r"(?:^|[\s\d])(?:[xX*/+\-^\u00d7\u00f7\u00b7\u2212\u2013]|times|by|per|\d\s+and|\d,)\s*$", re.IGNORECASE
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


class _Equation(NamedTuple):
    lhs_source: str  # the left side as written (for messages)
    lhs: tuple  # parsed left side
    rhs_options: tuple[tuple[tuple, str], ...]  # parsed right side(s), widest first, with their source


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
    return runs


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
                # 2(3+4) and (3+4)2; two bare numbers in a row ("1 1/2") stay a parse error.
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

    def _atom(self) -> tuple:
        tok = self._peek()
        if tok is None:
            raise ValueError("unexpected end")
        if tok.kind == "num":
            self.pos += 1
            return ("num", tok.value, tok.pct, tok.decimals)
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
            if _is_range(left):
                continue
            lhs = _Parser(left).parse()
            if lhs is None:
                continue
            if not _has_operator(lhs):
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
    if line[:run_start].strip() or line[right[-1].end :].strip(" ."):
        return None
    if len(left) != 1 or left[0].kind != "num" or right[0].kind == "op":
        return None
    expression = _Parser(right).parse()
    if expression is None or not _has_operator(expression):
        return None
    source = line[right[0].start : right[-1].end]
    return _Equation(source, expression, ((result, line[left[0].start : left[0].end]),))


def _equation_holds(lhs: tuple, rhs: tuple, rel_tol: float) -> tuple[bool, float | None]:
    """Whether ``lhs = rhs`` holds under some reading of ``%``; returns (holds, left value)."""
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
            if literal is not None:
                scale = 0.01 if (literal[2] and right_mode) else 1.0
                decimals = literal[3]
                if decimals > 0:
                    # Rounded or truncated in the last stated place: "10/3 = 3.33", "2/3 = 0.66".
                    if abs(left - right) <= 10.0**-decimals * scale * (1 + 1e-9):
                        return True, left
                elif not _close(left, round(left)) and abs(left - right) < scale:
                    # A fractional result stated as a whole number: "10/3 = 3 full boxes".
                    return True, left
    return False, left_value


def _find_equations(text: str) -> Iterator[_Equation]:
    """Every explicit equation of ``text``: GSM8K annotations first, then the visible text."""
    for annotation in _ANNOTATION_RE.finditer(text):
        yield from _equations_in_line(annotation.group(0)[2:-2])
    for line in _strip_annotations(text).splitlines():
        if "=" in line:
            yield from _equations_in_line(line)


def _equation_lines(text: str) -> dict[tuple[str, str], set[int]]:
    """The visible equations of ``text`` (left side parsed, right side as written) and their lines."""
    lines: dict[tuple[str, str], set[int]] = {}
    for number, line in enumerate(_strip_annotations(text).splitlines()):
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


def _first_wrong_equation(text: str, rel_tol: float) -> str | None:
    """Detail message for the first equation that does not hold, or None."""
    for equation in _find_equations(text):
        left_value: float | None = None
        for rhs, _source in equation.rhs_options:
            holds, value = _equation_holds(equation.lhs, rhs, rel_tol)
            if holds:
                break
            left_value = value
        else:
            # Report the narrowest reading ("5+3=9", not "5+3=9*2").
            shown = f"{equation.lhs_source}={equation.rhs_options[-1][1]}"
            if len(shown) <= 60:
                shown = shown.replace(" ", "")
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


_AFTER_EQUALS_RE = re.compile(r"=\s*\$?\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)(?:\s?%)?|\.\d+)")


def _derived_results(text: str) -> list[float]:
    """What a solution computes.

    The right side of each equation (every reading: a running computation, cents, ``%``), any
    number written right after "=", every value given to a one-letter unknown ("20 = A",
    "Y = 6/3"), and the value of the last arithmetic expression that is not part of an equation
    ("In all 48 + 24 clips").
    """
    values: list[float] = []
    for equation in _find_equations(text):
        for rhs, _source in equation.rhs_options:
            values.extend(_readings(rhs))
    # Any number written right after "=", whatever its left side ("Losses = 30", "10:00-00:00 = 10").
    for match in _AFTER_EQUALS_RE.finditer(text):
        values.extend(_numbers_in(match.group(1)))
    last: tuple | None = None
    for line in _strip_annotations(text).splitlines():
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
    lines = [line for line in _strip_annotations(body).splitlines() if line.strip()]
    if not lines:
        return False
    known = _numbers_in(question) if isinstance(question, str) else []
    if any(_close(abs(answer), abs(k)) for k in known):
        return False
    return any(_close(abs(answer), abs(v)) for v in _numbers_and_number_words(lines[-1]))


# --------------------------------------------------------------------------------------------
# Verifier base class and registry
# --------------------------------------------------------------------------------------------

VERIFIERS: dict[str, type[Verifier]] = {}
"""Registry of verifier classes by ``name``; subclasses defining ``name`` register themselves."""


class Verifier(abc.ABC):
    """Task-consistency gate: is a candidate rewrite an acceptable replacement for the reference?

    Calling a verifier runs the generic checks (in this order: ``"empty"``, ``"truncated"``, text
    after the final-answer line (trimmed, or ``"trailing_text"`` in strict mode),
    ``"mentions_rewriting"``, ``"echoes_instruction"``, ``"restates_question"``,
    ``"copies_reference"``, ``"repeated_line"`` on the kept text), then :meth:`check_reference`,
    then the subclass's ``_check``.

    Subclasses set the class attribute ``name`` (which registers them for :func:`get_verifier`),
    implement ``_check`` and usually :meth:`final_answer_end`, and add their constructor options to
    :meth:`_options` so that ``get_verifier(v.to_dict())`` rebuilds them.

    Args:
        strict: Reject text after the final-answer line (``"trailing_text"``) instead of trimming it.
        meta_phrases: Phrases that show the text talks about the rewriting itself; defaults to
            :data:`DEFAULT_META_PHRASES`. An empty list disables the check.
        max_question_copy: Largest fraction of the question's words the candidate may copy
            verbatim (in runs of ``copy_min_words`` words or more) before it fails with
            ``"restates_question"``; a candidate may always copy as much as the reference does.
            Copied question text costs the base model almost nothing given the question, so a
            rewriter trained on the distribution reward learns to restate the question (0.5 lets
            through 99% of GSM8K's expert answers). ``None`` disables the check.
        reject_repeated_lines: Fail with ``"repeated_line"`` when a line of at least
            ``repeated_line_min_words`` words occurs twice (case and punctuation ignored): repeated
            lines are another cheap way to lengthen a rewrite.
        max_reference_copy: Largest fraction of the reference's words (GSM8K ``<<...>>``
            annotations removed) the candidate may copy verbatim, in runs of ``copy_min_words``
            words or more, before it fails with ``"copies_reference"``. Off (``None``) by default:
            a copy of the expert answer is a correct answer, and keeping it changes nothing. For
            GRPO it is not a rewrite but the cheapest feasible candidate, and a rewriter retrained
            under the question-copy check learned to emit it (:class:`RewriterTrainingConfig`
            turns it on at 0.9).

    Example:
        ```python
        class YesNoVerifier(Verifier):
            name = "yes_no"

            def _check(self, text, reference, question):
                if text.lower().startswith(reference.lower()):
                    return VerificationResult(True, "", text)
                return VerificationResult(False, "wrong_final_answer", text)

        get_verifier("yes_no")("Yes, because...", "yes").passed  # True
        ```
    """

    name: ClassVar[str]
    echo_min_words: ClassVar[int] = 8
    """Length of the shortest verbatim run of instruction words that counts as an echo."""
    copy_min_words: ClassVar[int] = 8
    """Length of the shortest verbatim run of words that counts as copied (from the question or the reference)."""
    repeated_line_min_words: ClassVar[int] = 4
    """Shortest line that counts for ``"repeated_line"`` (short lines like "So:" may recur)."""

    def __init__(
        self,
        *,
        strict: bool = False,
        meta_phrases: Sequence[str] | None = None,
        max_question_copy: float | None = 0.5,
        reject_repeated_lines: bool = True,
        max_reference_copy: float | None = None,
    ) -> None:
        if isinstance(meta_phrases, str):
            raise TypeError("meta_phrases must be a sequence of phrases, not a single string")
        for option, value in (("max_question_copy", max_question_copy), ("max_reference_copy", max_reference_copy)):
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{option} must be in [0, 1] or None, got {value}")
        self.strict = bool(strict)
        self.meta_phrases: tuple[str, ...] | None = None if meta_phrases is None else tuple(meta_phrases)
        self.max_question_copy = None if max_question_copy is None else float(max_question_copy)
        self.reject_repeated_lines = bool(reject_repeated_lines)
        self.max_reference_copy = None if max_reference_copy is None else float(max_reference_copy)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if isinstance(name, str):
            VERIFIERS[name] = cls

    # -- public API ------------------------------------------------------------------------------

    def __call__(
        self,
        candidate: str,
        reference: str,
        *,
        question: str | None = None,
        truncated: bool = False,
        instruction: str | None = None,
    ) -> VerificationResult:
        """Verify ``candidate`` against ``reference``.

        Args:
            candidate: The rewrite.
            reference: The expert answer.
            question: The task's question (some checks use it, e.g. to tell restated numbers
                from worked ones).
            truncated: The generation hit its token limit.
            instruction: The rewriting instruction shown to the rewriter. Any run of
                ``echo_min_words`` words of it found in the candidate fails the check, except runs
                that also occur in the question or the reference (so passing the whole filled-in
                prompt is safe).

        Returns:
            A :class:`VerificationResult`.
        """
        if not isinstance(candidate, str) or not candidate.strip():
            return _fail("empty", "", "the candidate is empty")
        text = candidate.strip()
        if truncated:
            return _fail("truncated", text, "the generation hit the token limit")
        # Trailing text goes first: what the Rewriter trims away is never kept, so it must not
        # decide the verdict; in strict mode (GRPO) it is trained on, so it fails.
        end = self.final_answer_end(text, final=True)
        if end is not None and text[end:].strip():
            if self.strict:
                trailing = " ".join(text[end:].split())
                return _fail("trailing_text", text, f"text after the final-answer line: {trailing[:80]!r}")
            text = text[:end].strip()
        phrase = self._meta_phrase_in(text)
        if phrase is not None:
            return _fail("mentions_rewriting", text, f"the text talks about the rewriting ({phrase!r})")
        if instruction:
            echo = self._echoed_instruction(text, instruction, question, reference)
            if echo is not None:
                return _fail("echoes_instruction", text, f"the text repeats the instruction ({echo!r})")
        if self.max_question_copy is not None and question:
            copied, _ = _shared_runs(question, text, self.copy_min_words)
            allowed = self.max_question_copy
            if isinstance(reference, str):
                allowed = max(allowed, _shared_runs(question, reference, self.copy_min_words)[0])
            if copied > allowed:
                return _fail(
                    "restates_question",
                    text,
                    f"{copied:.0%} of the question's words are copied verbatim, at most {allowed:.0%} allowed",
                )
        if self.max_reference_copy is not None and isinstance(reference, str):
            copied, _ = _shared_runs(_strip_annotations(reference), text, self.copy_min_words)
            if copied > self.max_reference_copy:
                return _fail(
                    "copies_reference",
                    text,
                    f"{copied:.0%} of the expert answer's words are copied verbatim, at most "
                    f"{self.max_reference_copy:.0%} allowed",
                )
        if self.reject_repeated_lines:
            line = _repeated_line(text, self.repeated_line_min_words)
            if line is not None:
                return _fail("repeated_line", text, f"the line {line[:80]!r} occurs twice")
        reference_reason = self.check_reference(reference)
        if reference_reason is not None:
            return _fail(reference_reason, text, "the reference cannot be used to verify the candidate")
        return self._check(text, reference, question)

    def check_reference(self, reference: Any) -> str | None:
        """Reason code when the expert answer itself is unusable, else None.

        Returns:
            ``"invalid_reference"`` for None or a non-string, ``"reference_without_final_answer"``
            when no final answer can be extracted from it, else None.
        """
        if not isinstance(reference, str):
            return "invalid_reference"
        if not reference.strip() or self._reference_answer(reference) is None:
            return "reference_without_final_answer"
        return None

    def final_answer_end(self, text: str, final: bool = False) -> int | None:
        """Index just after the final-answer line, or None when there is no complete one.

        Cheap (regular expressions only): a generation ``StoppingCriteria`` calls it on partial
        text. See the module docstring for when a line counts as complete.

        Args:
            text: The (possibly partial) generated text.
            final: The text is finished: an unterminated last line counts as complete.

        Returns:
            The index after the line's newline (``len(text)`` for an unterminated line when
            ``final``), or None. The base implementation has no final-answer line and returns None.
        """
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description; ``get_verifier(v.to_dict())`` rebuilds an equal verifier."""
        return {"name": self.name, **self._options()}

    # -- subclass hooks --------------------------------------------------------------------------

    @abc.abstractmethod
    def _check(self, text: str, reference: str, question: str | None) -> VerificationResult:
        """Task-specific checks on the trimmed, stripped candidate ``text``."""

    def _reference_answer(self, reference: str) -> str | None:
        """The reference's final answer (None when there is none); used by :meth:`check_reference`."""
        return reference.strip() or None

    def _options(self) -> dict[str, Any]:
        """Constructor options as JSON-serialisable values (extend in subclasses)."""
        return {
            "strict": self.strict,
            "meta_phrases": None if self.meta_phrases is None else list(self.meta_phrases),
            "max_question_copy": self.max_question_copy,
            "reject_repeated_lines": self.reject_repeated_lines,
            "max_reference_copy": self.max_reference_copy,
        }

    # -- helpers ---------------------------------------------------------------------------------

    def _meta_phrase_in(self, text: str) -> str | None:
        phrases = DEFAULT_META_PHRASES if self.meta_phrases is None else self.meta_phrases
        pattern = _phrase_regex(tuple(phrases))
        if pattern is None:
            return None
        match = pattern.search(_normalize_phrase_text(text))
        return match.group(0) if match else None

    def _echoed_instruction(self, text: str, instruction: str, question: str | None, reference: Any) -> str | None:
        n = self.echo_min_words
        instruction_ngrams = _instruction_ngrams(instruction, n)
        if not instruction_ngrams:
            return None
        shared = _ngrams(text, n) & instruction_ngrams
        if not shared:
            return None
        # Runs the candidate may legitimately share with the question or the expert answer.
        allowed: set[tuple[str, ...]] = set()
        for source in (question, reference):
            if isinstance(source, str):
                allowed |= _ngrams(source, n)
        shared -= allowed
        if not shared:
            return None
        words = _normalize_words(text)
        for i in range(len(words) - n + 1):
            if tuple(words[i : i + n]) in shared:
                return " ".join(words[i : i + n])
        return None  # pragma: no cover - shared is non-empty

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), json.dumps(self.to_dict(), sort_keys=True, default=repr)))

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({options})"


# --------------------------------------------------------------------------------------------
# Math
# --------------------------------------------------------------------------------------------

_SENTENCE_SPLIT_RE = re.compile(r"\n+|(?<=[.!?;])\s+")
# An algebra step (with "=" in the sentence): an operator between numbers and one-letter unknowns
# ("4 * x + 600", "c + 2c", "X*1.2") or a coefficient times an unknown beside "=" ("9m = 27").
_ALGEBRA_OPERAND = r"(?:(?<![\w.])\d*\.?\d+[A-Za-z]?(?![\w.])|(?<![\w'\u2019])[A-Za-z](?![\w'\u2019])|\))"
_ALGEBRA_STEP_RE = re.compile(
    _ALGEBRA_OPERAND
    + r"\s*[-+*/^\u00d7\u00f7\u00b7\u2212\u2013]\s*\$?\s*(?=[\d.(]|[A-Za-z](?![\w'\u2019]))"
    + _ALGEBRA_OPERAND
    + r"|(?<![\w.])\d*\.?\d+[A-Za-z]\s*=|=\s*\$?\s*\d*\.?\d+[A-Za-z](?![\w'\u2019])"
)
# An equation between quantities with long units: "6 tubs of lip gloss * 2 tubes per tub = 12 tubes",
# "38 million/19 = 2 million" (an operator between two numbers, then "=" and a number).
_UNIT_STEP_RE = re.compile(
    r"\d[^\d=\n]{0,60}?(?:\s[-/xX\u2212\u2013]\s|\s?[*+\u00d7\u00f7]\s?|(?<=[A-Za-z])/(?=\d))"
    r"\s*[$\u20ac\u00a3]?\s*\.?\d[^=\n]*=\s*[$\u20ac\u00a3]?\s*\.?\d"
)
# An arithmetic expression "a op b" in a normalized sentence (unit words already removed).
_EXPRESSION_RE = re.compile(
    r"(?:\d%?|\))\s*(?:[-+*/^\u00d7\u00f7\u00b7\u2212\u2013]|\s[xX]\s|(?<=\d)[xX](?=\d))\s*\$?\s*(?:\d|\.\d|\()"
)


class MathVerifier(Verifier):
    """Gate for math word problems (GSM8K, MATH-style ``\\boxed{}`` answers).

    On top of the generic checks the candidate must have a final-answer line whose answer is
    equivalent to the reference's (:func:`math_answers_equal`), every explicit equation must hold,
    it must show explicit arithmetic, its final answer must be the result of that arithmetic, and it
    must not be much shorter than the expert answer.

    Final-answer lines: ``#### 72`` (GSM8K), a line with a closed ``\\boxed{...}``, or "The (final)
    answer is 72." (a number, possibly with a few unit words, and no further clause).

    Args:
        strict: Reject text after the final-answer line instead of trimming it.
        check_equations: Check every explicit equation ``a op b (op c)* = r`` (GSM8K ``<<48/2=24>>``
            annotations included); ``+ - * / x × ÷ ^``, "times"/"plus"/"minus"/"multiplied by"/
            "divided by", parentheses, ``$``, ``€``, ``£``, ``%`` (read both as a number and as a
            fraction) and thousands separators are understood. A running computation
            "5 + 3 = 8 * 2 = 16" is read as two equations. Unit words between the numbers are
            skipped: "6 screens * 8 movies/day = 48 movies/day", "8 hours/day / 2 hours/day = 4",
            "$100/day * 2 = $200/day" ("/day" is a unit, never a division by a word). They are kept,
            and the equation is not read, where skipping them would change its meaning: a
            conversion ("1/2 a cup = 4 ounces"), mixed sizes ("4 pounds - 6 ounces"), a rate
            ("3 degrees/5%").
        equation_rel_tol: Relative tolerance of an equation. A right side given as a single number
            is also accepted when it is the left side rounded or truncated to the number's own
            decimals ("10/3 = 3.33"), or a whole number within 1 of a fractional left side
            ("10/3 = 3 boxes").
        min_reasoning_steps: Minimum number of arithmetic steps before the final answer: sentences
            with an arithmetic expression ``a op b`` (unit words allowed between the numbers), an
            equation with an operator on one side (one-letter unknowns allowed: "4 * x + 600 =
            10000", "9m = 27") or a GSM8K annotation. Numbers alone are not steps ("he pays $55,
            which is 10% of his income"). ``0`` disables the check.
        require_derived_answer: Require the final answer (when it is a number) to be a result of
            the reasoning (``"answer_not_derived"`` otherwise): the right side of an equation (or any
            number written right after "="), a value given to a one-letter unknown ("x = 2350",
            "20 = A"), or the value of the last arithmetic expression that is not an equation
            ("In all 48 + 24 clips"). A fractional result may be rounded to a whole answer and a
            result may be in hundredths (0.25 dollars for 25 cents). As a last resort the last line
            of the reasoning may state the answer ("Thus, the zip code is 11026."), unless the
            question writes that number itself: restating "4 packs" from the question derives
            nothing.
        min_length_ratio: Minimum word count relative to the expert answer (annotations removed;
            unless ``max_question_copy`` is None, words copied from the question in runs of
            ``copy_min_words`` or more do not count, for the candidate or the expert
            answer). ``0`` disables the check.
        min_intermediate_recall: When set, the minimum fraction of the expert's intermediate results
            (right sides of its equations) that must appear as numbers in the candidate.
        reject_repeated_equations: Fail with ``"repeated_equation"`` when the same equation is
            written on two lines, unless the expert answer repeats it too (a rewriter that repeats
            its last step gets a longer, cheaper target without more reasoning).
        **gate_options: The generic checks' options (``meta_phrases``, ``max_question_copy``,
            ``reject_repeated_lines``, ``max_reference_copy``; see :class:`Verifier`).

    Example:
        ```python
        verifier = MathVerifier()
        reference = (
            "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\\n"
            "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\\n#### 72"
        )
        rewrite = "In May she sold half of 48, which is 48 / 2 = 24 clips. Together: 48 + 24 = 72.\\n#### 72"
        verifier(rewrite, reference).passed  # True
        verifier("The answer is 72.", reference).reason  # "no_reasoning"
        verifier(rewrite.replace("48 / 2", "48 * 2"), reference).reason  # "wrong_equation"
        verifier("In May: 48 / 2 = 24 clips.\n#### 72", reference).reason  # "answer_not_derived"
        ```
    """

    name = "math"

    def __init__(
        self,
        *,
        strict: bool = False,
        check_equations: bool = True,
        equation_rel_tol: float = 1e-3,
        min_reasoning_steps: int = 1,
        require_derived_answer: bool = True,
        min_length_ratio: float = 0.25,
        min_intermediate_recall: float | None = None,
        reject_repeated_equations: bool = True,
        **gate_options: Any,
    ) -> None:
        super().__init__(strict=strict, **gate_options)
        if equation_rel_tol < 0:
            raise ValueError(f"equation_rel_tol must be >= 0, got {equation_rel_tol}")
        if min_reasoning_steps < 0:
            raise ValueError(f"min_reasoning_steps must be >= 0, got {min_reasoning_steps}")
        if min_length_ratio < 0:
            raise ValueError(f"min_length_ratio must be >= 0, got {min_length_ratio}")
        if min_intermediate_recall is not None and not 0 <= min_intermediate_recall <= 1:
            raise ValueError(f"min_intermediate_recall must be in [0, 1], got {min_intermediate_recall}")
        self.check_equations = bool(check_equations)
        self.equation_rel_tol = float(equation_rel_tol)
        self.min_reasoning_steps = int(min_reasoning_steps)
        self.require_derived_answer = bool(require_derived_answer)
        self.min_length_ratio = float(min_length_ratio)
        self.min_intermediate_recall = None if min_intermediate_recall is None else float(min_intermediate_recall)
        self.reject_repeated_equations = bool(reject_repeated_equations)

    def final_answer_end(self, text: str, final: bool = False) -> int | None:
        """Index after the final-answer line (``####``, ``\\boxed{}``, "The answer is X"), or None.

        Example:
            ```python
            >>> MathVerifier().final_answer_end("48 + 24 = 72\\n#### 7") is None
            True
            >>> MathVerifier().final_answer_end("48 + 24 = 72\\n#### 72\\n")
            21
            ```
        """
        located = _locate_final_line(text, _MATH_KINDS, final)
        return located.end if located else None

    def _reference_answer(self, reference: str) -> str | None:
        return extract_math_answer(reference)

    def _options(self) -> dict[str, Any]:
        return {
            **super()._options(),
            "check_equations": self.check_equations,
            "equation_rel_tol": self.equation_rel_tol,
            "min_reasoning_steps": self.min_reasoning_steps,
            "require_derived_answer": self.require_derived_answer,
            "min_length_ratio": self.min_length_ratio,
            "min_intermediate_recall": self.min_intermediate_recall,
            "reject_repeated_equations": self.reject_repeated_equations,
        }

    def _check(self, text: str, reference: str, question: str | None) -> VerificationResult:
        located = _locate_final_line(text, _MATH_KINDS, final=True)
        if not located:
            return _fail("no_final_answer", text, "no '#### <answer>', \\boxed{} or 'The answer is' line")
        expected = extract_math_answer(reference)
        if expected is None or not math_answers_equal(located.answer, expected):
            return _fail(
                "wrong_final_answer",
                text,
                f"final answer {located.answer!r} is not equivalent to the reference's {expected!r}",
            )
        if self.check_equations:
            wrong = _first_wrong_equation(text, self.equation_rel_tol)
            if wrong is not None:
                return _fail("wrong_equation", text, wrong)
        if self.reject_repeated_equations:
            repeated = _repeated_equation(text, reference)
            if repeated is not None:
                return _fail("repeated_equation", text, f"{repeated} is written on two lines")
        if self.min_reasoning_steps:
            steps = self._count_reasoning_steps(text[: located.start])
            if steps < self.min_reasoning_steps:
                return _fail(
                    "no_reasoning",
                    text,
                    f"{steps} arithmetic step(s) before the final answer, {self.min_reasoning_steps} required",
                )
        if self.require_derived_answer:
            # The reasoning, and the box of "48 + 24 = \\boxed{72}" (but not "The answer = 72").
            worked = text[: located.end] if located.kind == "boxed" else text[: located.start]
            final_value = _numeric_value(located.answer)
            if (
                final_value is not None
                and not any(_is_result(final_value[0], v) for v in _derived_results(worked))
                and not _stated_in_conclusion(text[: located.start], final_value[0], question)
            ):
                return _fail(
                    "answer_not_derived",
                    text,
                    f"the final answer {located.answer!r} is not the result of any equation or of the last "
                    "arithmetic expression",
                )
        if self.min_length_ratio:
            words, reference_words = self._own_word_count(text, question), self._own_word_count(reference, question)
            if words < self.min_length_ratio * reference_words:
                return _fail(
                    "too_short",
                    text,
                    f"{words} words, fewer than {self.min_length_ratio:g} x the expert answer's {reference_words}",
                )
        if self.min_intermediate_recall is not None:
            expected_values = _intermediate_results(reference)
            if expected_values:
                found = _numbers_in(_strip_annotations(text))
                recalled = [v for v in expected_values if any(_close(v, abs(f), 1e-6) for f in found)]
                recall = len(recalled) / len(expected_values)
                if recall < self.min_intermediate_recall:
                    missing = [_format_number(v) for v in expected_values if v not in recalled]
                    return _fail(
                        "missing_intermediate_results",
                        text,
                        f"{len(recalled)}/{len(expected_values)} of the expert's intermediate results "
                        f"appear (missing: {', '.join(missing)})",
                    )
        return VerificationResult(passed=True, reason="", text=text)

    def _own_word_count(self, text: str, question: str | None) -> int:
        """Words of ``text`` (annotations removed) not copied verbatim from the question."""
        words = _word_count(text)
        if question and self.max_question_copy is not None:
            words -= _shared_runs(question, _strip_annotations(text), self.copy_min_words)[1]
        return words

    @staticmethod
    def _count_reasoning_steps(body: str) -> int:
        """Sentences of ``body`` with an explicit arithmetic step.

        A step is a GSM8K annotation ``<<a*b=c>>`` (not ``<<30=30>>``), an equation with an operator,
        an arithmetic expression ``a op b`` (``+ - * / x × ÷ ^``, the words "times", "plus",
        "minus", "multiplied by", "divided by"; unit words between the numbers are allowed), or an
        algebra step with one-letter unknowns ("4 * x + 600 = 10000", "9m = 27"). A number alone is
        not a step: "he pays $55, which is 10% of his income" states, it does not compute.
        """
        steps = 0
        for sentence in _SENTENCE_SPLIT_RE.split(body):
            if not sentence.strip():
                continue
            if any(_EXPRESSION_RE.search(a.group(0)) for a in _ANNOTATION_RE.finditer(sentence)):
                steps += 1
                continue
            visible = _strip_annotations(sentence)
            normalized = _normalize_math_line(visible)
            if (
                _EXPRESSION_RE.search(normalized)
                or ("=" in normalized and (_ALGEBRA_STEP_RE.search(normalized) or _UNIT_STEP_RE.search(normalized)))
                or next(_equations_in_line(visible), None)
            ):
                steps += 1
        return steps


# --------------------------------------------------------------------------------------------
# Multiple choice
# --------------------------------------------------------------------------------------------


class ChoiceVerifier(Verifier):
    """Gate for multiple-choice answers: the chosen letter must equal the reference's.

    The letter is read from a final-answer line: ``#### B``, ``\\boxed{B}``, "The answer is (B)",
    "Answer: B" (also "The correct option is B"); a bare ``"B"``/``"(B)"``/``"B."`` text also counts.

    Args:
        letters: The allowed option letters (upper case).
        **gate_options: The generic checks' options (``strict``, ``meta_phrases``,
            ``max_question_copy``, ``reject_repeated_lines``, ``max_reference_copy``; see :class:`Verifier`).

    Example:
        ```python
        verifier = ChoiceVerifier()
        verifier("Water boils at 100 degrees at sea level.\\nThe answer is (B).", "B").passed  # True
        verifier("Answer: C", "#### B").reason  # "wrong_final_answer"
        ```
    """

    name = "choice"

    def __init__(self, *, letters: str = "ABCDE", **gate_options: Any) -> None:
        super().__init__(**gate_options)
        letters = "".join(dict.fromkeys(letters.upper()))
        if not letters or not letters.isalpha():
            raise ValueError(f"letters must be a non-empty string of letters, got {letters!r}")
        self.letters = letters

    @property
    def _kinds(self) -> tuple[tuple[str, _Kind, bool], ...]:
        return _choice_kinds(self.letters)

    def final_answer_end(self, text: str, final: bool = False) -> int | None:
        located = _locate_final_line(text, self._kinds, final)
        return located.end if located else None

    def extract_choice(self, text: str) -> str | None:
        """The chosen letter of a (finished) text, or None."""
        located = _locate_final_line(text, self._kinds, final=True)
        if located:
            return located.answer
        # A finished text may still name its choice mid-line ("The answer is A because ...").
        loose = list(_choice_answer_is_re(self.letters).finditer(text))
        if loose:
            return loose[-1].group("ans")
        bare = re.fullmatch(rf"\s*[(\[]?\s*([{self.letters}])\s*[)\].:]?\s*", text)
        return bare.group(1) if bare else None

    def _reference_answer(self, reference: str) -> str | None:
        return self.extract_choice(reference)

    def _options(self) -> dict[str, Any]:
        return {**super()._options(), "letters": self.letters}

    def _check(self, text: str, reference: str, question: str | None) -> VerificationResult:
        chosen = self.extract_choice(text)
        if chosen is None:
            return _fail("no_final_answer", text, f"no chosen option ({', '.join(self.letters)})")
        expected = self.extract_choice(reference)
        if chosen != expected:
            return _fail("wrong_final_answer", text, f"chose {chosen}, the reference chose {expected}")
        return VerificationResult(passed=True, reason="", text=text)


@lru_cache(maxsize=8)
def _choice_answer_is_re(letters: str) -> re.Pattern[str]:
    letter = rf"(?-i:[{re.escape(letters)}])"
    return re.compile(
        rf"(?i)\b(?:the\s+)?(?:correct\s+|final\s+|right\s+)?(?:answer|option|choice)\s*(?:is|:)\s*:?"
        rf"[ \t*]*(?:option\s+|choice\s+)?[(\[]?\s*(?P<ans>{letter})\s*[)\]]?(?![A-Za-z])"
    )


@lru_cache(maxsize=8)
def _choice_kinds(letters: str) -> tuple[tuple[str, _Kind, bool], ...]:
    letter = rf"(?-i:[{re.escape(letters)}])"
    hash_re = re.compile(rf"####[ \t]*[(\[]?\s*(?P<ans>{letter})\s*[)\]]?(?![A-Za-z])")
    answer_is_re = _choice_answer_is_re(letters)

    def accept(match: re.Match[str], rest: str) -> str | None:
        # "The answer is (B) Paris." keeps the option's text; "The answer is A because..." does not end.
        if re.search(r"\d", rest) or any(w in _CLAUSE_WORDS for w in re.findall(r"[a-z']+", rest.lower())):
            return None
        return match.group("ans")

    def accept_boxed(content: str) -> str | None:
        inner = re.sub(r"\\text\s*\{([^{}]*)\}", r"\1", content).strip().strip("()").strip()
        return inner if len(inner) == 1 and inner in letters else None

    return (
        ("hash", _regex_kind(hash_re, lambda m, rest: m.group("ans")), False),
        ("boxed", _boxed_kind(accept_boxed), True),
        ("answer_is", _regex_kind(answer_is_re, accept), True),
    )


# --------------------------------------------------------------------------------------------
# Exact match
# --------------------------------------------------------------------------------------------

_EXACT_HASH_RE = re.compile(r"####[ \t]*(?P<ans>\S[^\n]*)")
_EXACT_ANSWER_IS_RE = re.compile(r"(?im)^[ \t*]*(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)[ \t:*]*(?P<ans>\S[^\n]*)")
_EXACT_KINDS: tuple[tuple[str, _Kind, bool], ...] = (
    ("hash", _regex_kind(_EXACT_HASH_RE, lambda m, rest: m.group("ans").strip()), False),
    ("answer_is", _regex_kind(_EXACT_ANSWER_IS_RE, lambda m, rest: m.group("ans").strip()), True),
)


def _exact_answer(text: str) -> str | None:
    located = _locate_final_line(text, _EXACT_KINDS, final=True)
    if located:
        return located.answer
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


class ExactMatchVerifier(Verifier):
    """Gate for short factual answers: normalised exact match of the final answers.

    The answer is the ``#### X`` line, else a line starting "The answer is X" / "Answer: X", else
    the last non-empty line. Normalisation (SQuAD style): lower case, punctuation and articles
    removed, whitespace collapsed.

    Args:
        strict, meta_phrases, max_question_copy, reject_repeated_lines, max_reference_copy: The
            generic checks' options (see :class:`Verifier`).

    Example:
        ```python
        verifier = ExactMatchVerifier()
        verifier("France's capital is on the Seine.\\nThe answer is Paris.", "#### paris").passed  # True
        ```
    """

    name = "exact"

    def final_answer_end(self, text: str, final: bool = False) -> int | None:
        located = _locate_final_line(text, _EXACT_KINDS, final)
        return located.end if located else None

    def _reference_answer(self, reference: str) -> str | None:
        answer = _exact_answer(reference)
        return answer if answer and _normalize_answer(answer) else None

    def _check(self, text: str, reference: str, question: str | None) -> VerificationResult:
        answer = _exact_answer(text)
        if answer is None or not _normalize_answer(answer):
            return _fail("no_final_answer", text, "no final answer")
        expected = _exact_answer(reference) or ""
        if _normalize_answer(answer) != _normalize_answer(expected):
            return _fail("wrong_final_answer", text, f"answer {answer!r} differs from the reference's {expected!r}")
        return VerificationResult(passed=True, reason="", text=text)


# --------------------------------------------------------------------------------------------
# Regex
# --------------------------------------------------------------------------------------------


class RegexVerifier(Verifier):
    """Gate comparing what a regular expression extracts from candidate and reference.

    The answer is the last match's group 1 (or the whole match when the pattern has no group),
    normalised like :class:`ExactMatchVerifier`. A regex says nothing about where an answer line
    ends, so :meth:`final_answer_end` returns None: nothing is trimmed and generation is not cut.

    Args:
        pattern: The regular expression.
        flags: ``re`` flags as an int (e.g. ``re.IGNORECASE``).
        **gate_options: The generic checks' options (``strict``, ``meta_phrases``,
            ``max_question_copy``, ``reject_repeated_lines``, ``max_reference_copy``; see :class:`Verifier`).

    Example:
        ```python
        verifier = RegexVerifier(r"Answer:\\s*(\\w+)")
        verifier("Blue light scatters most.\\nAnswer: blue", "Answer: Blue").passed  # True
        ```
    """

    name = "regex"

    def __init__(self, pattern: str, *, flags: int = 0, **gate_options: Any) -> None:
        super().__init__(**gate_options)
        self.pattern = pattern
        self.flags = int(flags)
        self._regex = re.compile(pattern, self.flags)

    def extract(self, text: str) -> str | None:
        """The last match's group 1 (or whole match), stripped, or None."""
        matches = list(self._regex.finditer(text))
        if not matches:
            return None
        last = matches[-1]
        value = last.group(1) if self._regex.groups else last.group(0)
        return value.strip() if value is not None else None

    def _reference_answer(self, reference: str) -> str | None:
        return self.extract(reference)

    def _options(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "flags": self.flags, **super()._options()}

    def _check(self, text: str, reference: str, question: str | None) -> VerificationResult:
        answer = self.extract(text)
        if answer is None:
            return _fail("no_final_answer", text, f"no match of {self.pattern!r}")
        expected = self.extract(reference) or ""
        if _normalize_answer(answer) != _normalize_answer(expected):
            return _fail("wrong_final_answer", text, f"answer {answer!r} differs from the reference's {expected!r}")
        return VerificationResult(passed=True, reason="", text=text)


# --------------------------------------------------------------------------------------------
# Callable
# --------------------------------------------------------------------------------------------


def _import_path(fn: Callable[..., Any]) -> str | None:
    """``"module:qualname"`` when importing it gives back ``fn``, else None."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    try:
        return f"{module}:{qualname}" if _resolve_import_path(f"{module}:{qualname}") is fn else None
    except (ImportError, AttributeError, ValueError):
        return None


def _resolve_import_path(path: str) -> Callable[..., Any]:
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"expected 'module:qualname', got {path!r}")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class CallableVerifier(Verifier):
    """Gate delegating the task check to a user function ``fn(candidate, reference)``.

    The generic checks run first. ``fn`` receives the trimmed candidate and the reference (and
    ``question=`` when its signature accepts it) and returns a bool, a ``(bool, reason)`` pair or a
    :class:`VerificationResult`. A plain False becomes the reason ``"rejected"``.

    Args:
        fn: The function, or its import path ``"module:qualname"``.
        **gate_options: The generic checks' options (``strict``, ``meta_phrases``,
            ``max_question_copy``, ``reject_repeated_lines``, ``max_reference_copy``; see :class:`Verifier`).

    Example:
        ```python
        def same_last_word(candidate, reference):
            return candidate.split()[-1].lower() == reference.split()[-1].lower()

        verifier = get_verifier(same_last_word)
        verifier("It is green", "green").passed  # True
        verifier.to_dict()  # {"name": "callable", "callable": "__main__:same_last_word", ...}
        ```
    """

    name = "callable"

    def __init__(self, fn: Callable[..., Any] | str, **gate_options: Any) -> None:
        super().__init__(**gate_options)
        if isinstance(fn, str):
            fn = _resolve_import_path(fn)
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        try:
            parameters = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            parameters = []
        self._pass_question = any(
            p.kind is inspect.Parameter.VAR_KEYWORD
            or (p.name == "question" and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
            for p in parameters
        )

    def _options(self) -> dict[str, Any]:
        # None when the function cannot be re-imported (a lambda, a closure): get_verifier then
        # refuses to rebuild it instead of silently using another gate.
        return {"callable": _import_path(self.fn), **super()._options()}

    def _check(self, text: str, reference: str, question: str | None) -> VerificationResult:
        out = self.fn(text, reference, question=question) if self._pass_question else self.fn(text, reference)
        if isinstance(out, VerificationResult):
            return VerificationResult(
                out.passed, "" if out.passed else (out.reason or "rejected"), out.text or text, out.detail
            )
        if isinstance(out, tuple) and len(out) == 2:
            passed, reason = bool(out[0]), out[1]
            return VerificationResult(passed, "" if passed else (str(reason) if reason else "rejected"), text)
        if isinstance(out, (bool, int)) or out is None:
            return VerificationResult(bool(out), "" if out else "rejected", text)
        raise TypeError(
            f"the verifier callable returned {type(out).__name__}; expected bool, (bool, reason) or VerificationResult"
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.fn is other.fn and self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), id(self.fn), self.strict, self.meta_phrases))


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


def get_verifier(
    spec: str | dict[str, Any] | Verifier | Callable[..., Any] | None = "math", **options: Any
) -> Verifier:
    """Build a verifier from a name, a ``to_dict()`` dict, an instance or a function.

    Args:
        spec: ``"math"``, ``"choice"``, ``"exact"``, ``"regex"``, ``"callable"`` (or the ``name`` of
            any registered :class:`Verifier` subclass); a dict from :meth:`Verifier.to_dict`; a
            :class:`Verifier` (returned as is); a Verifier subclass; a plain callable (wrapped in
            :class:`CallableVerifier`); or None for ``MathVerifier()``.
        **options: Constructor options, e.g. ``get_verifier("regex", pattern=r"#### (\\w+)")``;
            for a dict they override its values.

    Returns:
        A :class:`Verifier`.

    Example:
        ```python
        verifier = get_verifier("math", strict=True)
        assert get_verifier(verifier.to_dict()) == verifier
        ```
    """
    if isinstance(spec, Verifier):
        if options:
            raise ValueError("options cannot be combined with a Verifier instance; build a new one instead")
        return spec
    if spec is None:
        return MathVerifier(**options)
    if isinstance(spec, type) and issubclass(spec, Verifier):
        return spec(**options)
    if isinstance(spec, str):
        return _verifier_class(spec)(**options)
    if isinstance(spec, dict):
        config = {**spec, **options}
        name = config.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(f"a verifier dict needs a 'name' (one of {sorted(VERIFIERS)}), got {spec!r}")
        cls = _verifier_class(name)
        if cls is CallableVerifier:
            path = config.pop("callable", None)
            if path is None:
                raise ValueError(
                    "this callable verifier cannot be rebuilt: its function is not importable "
                    "(a lambda or a local function); pass the function itself to get_verifier"
                )
            config["fn"] = path
        return cls(**config)
    if callable(spec):
        return CallableVerifier(spec, **options)
    raise TypeError(f"cannot build a verifier from {type(spec).__name__}")


def _verifier_class(name: str) -> type[Verifier]:
    cls = VERIFIERS.get(name) or VERIFIERS.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown verifier {name!r}; known: {', '.join(sorted(VERIFIERS))}")
    return cls
