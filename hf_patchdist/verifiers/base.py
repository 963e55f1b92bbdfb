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
"""The verifier base class: the result type, the generic checks every verifier runs, the registry.

Subclasses of :class:`Verifier` that define ``name`` register themselves in :data:`VERIFIERS`;
:func:`~hf_patchdist.verifiers.registry.get_verifier` builds them by name.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .presets import DEFAULT_META_PHRASES
from .text_checks import (
    _instruction_ngrams,
    _ngrams,
    _normalize_phrase_text,
    _normalize_words,
    _phrase_regex,
    _repeated_line,
    _shared_runs,
    reference_similarity,
    strip_calculator_annotations,
)


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of one verification.

    Args:
        passed: Whether the candidate keeps the task.
        reason: ``""`` when passed, else a short snake_case code (see :mod:`hf_patchdist.verifiers`).
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
        max_reference_copy: Largest share of the reference's words the candidate may keep in the
            same order (:func:`~hf_patchdist.verifiers.text_checks.reference_similarity`: the longest
            common subsequence of words, GSM8K ``<<...>>`` annotations removed on both sides, so
            editing a few words or leaving the annotations in does not hide a copy) before it fails
            with ``"copies_reference"``. Off (``None``) by default: a copy of the expert answer is a
            correct answer, and keeping it changes nothing. For GRPO it is not a rewrite but the
            cheapest feasible candidate, and a rewriter retrained under the question-copy check
            learned to emit it (:data:`~hf_patchdist.verifiers.GRPO_GATE` turns it on).

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
            # Annotations are removed on both sides: "<<48/2=24>>" between copied words must not hide a copy.
            copied, _ = _shared_runs(question, strip_calculator_annotations(text), self.copy_min_words)
            allowed = self.max_question_copy
            if isinstance(reference, str):
                allowed = max(allowed, _shared_runs(question, strip_calculator_annotations(reference), self.copy_min_words)[0])
            if copied > allowed:
                return _fail(
                    "restates_question",
                    text,
                    f"{copied:.0%} of the question's words are copied verbatim, at most {allowed:.0%} allowed",
                )
        if self.max_reference_copy is not None and isinstance(reference, str):
            copied = reference_similarity(text, reference)
            if copied > self.max_reference_copy:
                return _fail(
                    "copies_reference",
                    text,
                    f"{copied:.0%} of the expert answer's words are kept in the same order, at most "
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
        text. See :mod:`hf_patchdist.verifiers.final_answer` for when a line counts as complete.

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
