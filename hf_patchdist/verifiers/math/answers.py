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
"""Final answers of math texts: the markers of a final-answer line, :func:`extract_math_answer`, and
:func:`math_answers_equal` (plain numbers compared numerically, anything else by ``math_verify``).
"""

from __future__ import annotations

import re
import threading

from ..final_answer import _CLAUSE_WORDS, _boxed_kind, _boxed_spans, _Kind, _regex_kind
from ..text_checks import _NUMBER_RE, _close, strip_calculator_annotations

# --------------------------------------------------------------------------------------------
# Final-answer lines
# --------------------------------------------------------------------------------------------

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
    numbers = list(_NUMBER_RE.finditer(strip_calculator_annotations(text)))
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
