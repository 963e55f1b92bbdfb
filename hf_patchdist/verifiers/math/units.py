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
"""Unit words inside arithmetic: "6 screens * 8 movies/day = 48 movies/day".

:func:`_strip_units` removes the unit words between numbers and operators before a line is
tokenized (:mod:`hf_patchdist.verifiers.math.arithmetic`), except where that would change what the
line computes (a conversion, mixed sizes, a rate).
"""

from __future__ import annotations

import re

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


# "10 (Pets) * 5 (Groceries) = 50": a unit label in parentheses is a unit word, or the equation is not read at all
# (gate 13: the demo kept that line, its 10 never computed).
_PARENTHESIZED_UNIT_RE = re.compile(r"(?<=[\d%])\s*\(\s*([A-Za-z][A-Za-z'\-]*(?:\s+[A-Za-z][A-Za-z'\-]*){0,2})\s*\)")


def _strip_units(line: str) -> str:
    """Remove unit words between numbers and operators (see _UNITS_RE), except where unsafe; a unit label in
    parentheses after a number ("10 (Pets) * 5") is read as a unit word first.

    Kept: a unit before a tight ``/`` ("3 degrees/5%" is a rate, not a division); a unit before
    "=" whose left side is a single quantity ("1/2 a cup = 4 ounces" is a conversion); units of
    the same measure but different sizes around ``+``/``-`` ("4 pounds - 6 ounces").
    """
    line = _PARENTHESIZED_UNIT_RE.sub(r" \1", line)
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
