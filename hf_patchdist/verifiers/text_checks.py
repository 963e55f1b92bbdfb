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


def strip_calculator_annotations(text: str) -> str:
    """Remove GSM8K calculator annotations ``<<48/2=24>>``."""
    return ANNOTATION_RE.sub("", text)


def _word_count(text: str) -> int:
    """Words of ``text`` without its annotations, counted as :func:`_normalize_words` splits them."""
    return len(_normalize_words(strip_calculator_annotations(text)))


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


# Scripts written without spaces between words: every Han character, kana and the iteration marks is a
# token of its own (a whole Chinese clause would otherwise be one "word", and no copy of it could be seen).
_CHARACTER_SCRIPTS = (
    "\u3005\u3006\u3007\u303b"  # 々 〆 〇 〻
    "\u3040-\u30ff"  # hiragana, katakana (with the prolonged sound mark)
    "\u31f0-\u31ff"  # katakana phonetic extensions
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs, extension A, compatibility
    "\uff66-\uff9f"  # half-width katakana
    "\U00020000-\U0003134f"  # CJK ideograph extensions B-G
)
_WORD_TOKEN_RE = re.compile(
    rf"[{_CHARACTER_SCRIPTS}]|[^\W_{_CHARACTER_SCRIPTS}]+(?:'[^\W\d_{_CHARACTER_SCRIPTS}]+)?"
)


def _normalize_words(text: str) -> list[str]:
    """The words of ``text`` as every text check of the gate compares them: the one place words are tokenised.

    Unicode words, lower-cased (``"Наталья"`` gives ``"наталья"``), with an apostrophe inside a word kept
    (``"don't"``); numbers are words of digits (``"48/2"`` gives ``"48"``, ``"2"``); punctuation and
    ``_`` separate words. Han characters and kana are one token each, since those scripts do not put
    spaces between words.

    Example:
        ```python
        >>> _normalize_words("Natalia's 48/2 clips, Наталья, 娜塔莉亚")
        ["natalia's", '48', '2', 'clips', 'наталья', '娜', '塔', '莉', '亚']
        ```
    """
    return _WORD_TOKEN_RE.findall(text.replace("\u2019", "'").lower())


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


def _lcs_length(reference: list[str], text: list[str]) -> int:
    """Length of the longest common subsequence of two word lists (bit-parallel, Hyyro 2004)."""
    if not reference or not text:
        return 0
    masks: dict[str, int] = {}
    for position, word in enumerate(reference):
        masks[word] = masks.get(word, 0) | (1 << position)
    full = (1 << len(reference)) - 1
    row = full
    for word in text:
        matches = row & masks.get(word, 0)
        row = ((row + matches) | (row - matches)) & full
    return len(reference) - bin(row).count("1")


def reference_similarity(candidate: str, reference: str) -> float:
    """Share of the reference's words that ``candidate`` keeps in the same order: how much of it is a copy.

    The longest common subsequence of the two texts' words (:func:`_normalize_words`, so any language;
    GSM8K ``<<...>>`` annotations removed on both sides), divided by the reference's word count. Unlike
    verbatim runs of words, it is not defeated by editing a few words: each edited word of the
    reference costs one word of the share. 1.0 for a copy, 0.0 when either text has no words.

    Example:
        ```python
        >>> reference_similarity("Natalia sold 48/2 = 24 clips in the month of May.", "Natalia sold 48/2 = <<48/2=24>>24 clips in May.")
        1.0
        ```
    """
    reference_words = _normalize_words(strip_calculator_annotations(reference))
    if not reference_words:
        return 0.0
    text_words = _normalize_words(strip_calculator_annotations(candidate))
    return _lcs_length(reference_words, text_words) / len(reference_words)


def is_reference_copy(candidate: str, reference: str) -> bool:
    """Whether ``candidate`` is the reference itself once GSM8K annotations and all whitespace are removed from
    both (``"28-4 = 24"`` copies ``"28-4=<<28-4=24>>24"``): the Rewriter labels such a target
    ``patch_source="copy"``, not a rewrite."""
    if not isinstance(candidate, str) or not isinstance(reference, str):
        return False
    return "".join(strip_calculator_annotations(candidate).split()) == "".join(strip_calculator_annotations(reference).split())


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
