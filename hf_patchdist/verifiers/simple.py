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
"""Gates for other tasks: exact match of short answers, a regular expression, a user function."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

from .base import VerificationResult, Verifier, _fail
from .final_answer import _Kind, _locate_final_line, _regex_kind
from .text_checks import _normalize_answer

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
