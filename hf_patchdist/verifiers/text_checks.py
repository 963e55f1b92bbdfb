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
"""Generic text helpers of the gate: GSM8K annotations, numbers, words, phrases, verbatim copies.

The generic checks of :class:`~hf_patchdist.verifiers.base.Verifier` (meta phrases, echoed
instruction, copied question or reference, repeated lines) and the task verifiers build on these.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

ANNOTATION_RE = re.compile(r"<<[^<>\n]*>>")
_NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])(?:\s?%)?|(?<![\w.])\.\d+")
_WORD_RE = re.compile(r"\S+")


def strip_calculator_annotations(text: str) -> str:
    """Remove GSM8K calculator annotations ``<<48/2=24>>``."""
    return ANNOTATION_RE.sub("", text)


def _word_count(text: str) -> int:
    return len(_WORD_RE.findall(strip_calculator_annotations(text)))


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
    for line in strip_calculator_annotations(text).splitlines():
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
