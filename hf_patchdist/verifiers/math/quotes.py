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
"""Whether a solution quotes the question's facts with the question's numbers.

The arithmetic checks read equations, not the sentences around them, and a rewriter that restates the question
(cheap under the base model) sometimes restates it wrong while its arithmetic still holds: "Bekah had to read 113
pages for history class." for the question's "Bekah had to read 408 pages", then "408 - 113 = 295" as in the expert
answer (the committed GSM8K rewriter's patch of ``train[:400]``, 3 of its 114 rewrites). A number is taken as a quote
of the question when the words around it are the question's: the same three words before it and the same word after
it ("had to read _ pages"). A quote whose number is none of the numbers the question writes in that place fails.
"""

from __future__ import annotations

import re

from ..text_checks import _close, _numbers_in

# Numbers (with "$", thousands separators, decimals, "%"), words (Unicode letters, "Reese's"), and the punctuation
# and operators that end a phrase.
_TOKEN_RE = re.compile(
    r"[$\u20ac\u00a3]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)%?|[^\W\d_]+(?:['\u2019][^\W\d_]+)?|[.!?;:,=+*/^()\-\u00d7\u00f7\u2212\u2013]"
)
_CONTEXT_WORDS = 3
"""Words before the number that must match. With 3 (and :data:`_RELATIVE_WORDS`), 56 of the 8,792 GSM8K expert
answers (0.64%) fail, nearly all stating a new quantity in the question's words ("a total of 20 miles" where the
question's total is 12 miles); with 4, "If Reese is 6 inches taller" passes (the question: "If Reese is 60 inches
tall", a sentence end four words before the number)."""
# A number followed by one of these states a difference or a ratio ("her sister is 9 years older"), not the quantity
# that the same words state without it ("her sister is 56 years old"): the two are different facts.
_RELATIVE_WORDS = frozenset(
    "more less fewer longer shorter older younger taller bigger larger smaller higher lower faster slower heavier "
    "lighter cheaper wider deeper greater later earlier than times".split()
)


def _quotes(text: str) -> list[tuple[tuple[str, ...], tuple[str, bool], float, str]]:
    """Every number with ``_CONTEXT_WORDS`` words right before it and a word right after it: (the words before, (the
    word after, whether a comparative follows), its value, the phrase as written)."""
    tokens = _TOKEN_RE.findall(text)
    words = [token.isalpha() or ("'" in token or "\u2019" in token) for token in tokens]
    quotes = []
    for i, token in enumerate(tokens):
        values = _numbers_in(token) if token[-1].isdigit() or token.endswith("%") else []
        value = values[0] if values else None
        if value is None or i < _CONTEXT_WORDS or i + 1 >= len(tokens) or not words[i + 1]:
            continue
        if not all(words[i - _CONTEXT_WORDS : i]):
            continue
        context = tuple(t.lower() for t in tokens[i - _CONTEXT_WORDS : i])
        after = tokens[i + 1].lower()
        relative = i + 2 < len(tokens) and tokens[i + 2].lower() in _RELATIVE_WORDS
        quotes.append((context, (after, relative), value, " ".join(tokens[i - _CONTEXT_WORDS : i + 2])))
    return quotes


def first_misquoted_fact(text: str, question: str) -> str | None:
    """The first number that ``text`` writes where the question, in the same words, writes another number.

    Args:
        text: The reasoning of a candidate (GSM8K ``<<...>>`` annotations are ignored by the caller's stripping or
            here, since a number inside one has an operator or "=" around it).
        question: The question it answers.

    Returns:
        A description ("'had to read 113 pages', the question says 'had to read 408 pages'"), or None.

    Example:
        ```python
        >>> question = "Bekah had to read 408 pages for history class. She read 113 pages over the weekend."
        >>> first_misquoted_fact("Bekah had to read 113 pages. 408 - 113 = 295 pages", question)
        "'had to read 113 pages', the question says 'had to read 408 pages'"
        >>> first_misquoted_fact("She had to read 408 pages and read 113, so 408 - 113 = 295 pages", question) is None
        True
        ```
    """
    stated: dict[tuple[tuple[str, ...], tuple[str, bool]], list[tuple[float, str]]] = {}
    for context, after, value, written in _quotes(question):
        stated.setdefault((context, after), []).append((value, written))
    if not stated:
        return None
    for context, after, value, written in _quotes(text):
        in_question = stated.get((context, after))
        if in_question and not any(_close(value, other) for other, _ in in_question):
            return f"{written!r}, the question says {in_question[0][1]!r}"
    return None
