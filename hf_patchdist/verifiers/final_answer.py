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
"""Final-answer lines: where a solution states its answer, and when that line is complete.

Final-answer lines and ``final_answer_end(text, final=False)``: a final-answer line is *complete*
when it is terminated by a newline (``final=False``, the default, used on partially generated text)
or when the text ends (``final=True``, used on finished text). ``"#### 7"`` without a newline is
therefore not complete while generating (the model may still be writing ``"72"``). Markers have a
priority: a ``####`` line beats a ``\\boxed{}`` line, which beats a "The answer is X" line; while a
stronger marker could still follow a weaker one (the next line has not started yet, or starts with
``#``, ``\\``, ``$``, ``*``, ``(`` or ``[`` and is not finished), the weaker line is not reported as
complete, so a rewrite ending "The answer is 72.\\n#### 72" keeps its ``####`` line.

Each verifier describes its markers as "kinds" built with :func:`_regex_kind` and
:func:`_boxed_kind` (math: :mod:`hf_patchdist.verifiers.math.answers`; choice and exact match:
their own modules) and finds its line with :func:`_locate_final_line`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple


def _line_end(text: str, pos: int, final: bool) -> int | None:
    """Index just after the newline ending the line that holds ``pos`` (see module docstring)."""
    newline = text.find("\n", pos)
    if newline == -1:
        return len(text) if final else None
    return newline + 1


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


# Words that start a clause: an answer line that goes on with one ("The answer is A because...") has
# not ended, so it is no final-answer line.
_CLAUSE_WORDS = frozenset(
    "because since but if so as not when however which that and or than then we i you it while "
    "although though unless until".split()
)
