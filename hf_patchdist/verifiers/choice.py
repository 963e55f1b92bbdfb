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
"""The multiple-choice gate: :class:`ChoiceVerifier`."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .base import VerificationResult, Verifier, _fail
from .final_answer import _CLAUSE_WORDS, _boxed_kind, _Kind, _locate_final_line, _regex_kind


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
