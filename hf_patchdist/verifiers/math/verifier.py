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
"""The math gate: :class:`MathVerifier`."""

from __future__ import annotations

import math
import re
from typing import Any

from ..base import VerificationResult, Verifier, _fail
from ..final_answer import _locate_final_line
from ..text_checks import ANNOTATION_RE, _close, _numbers_in, _shared_runs, strip_calculator_annotations, _word_count
from .answers import _MATH_KINDS, _numeric_value, extract_math_answer, math_answers_equal
from .algebra import first_unsolved_algebra
from .arithmetic import _format_number, _has_operator, _normalize_math_line, _only_identity_arithmetic
from .derivation import _derived_results, _is_result, _stated_in_conclusion
from .equations import _equations_in_line, _first_wrong_equation, _intermediate_results, _repeated_equation, _states_rounded_results
from .grounding import _SENTENCE_SPLIT_RE, first_ungrounded_operand
from .quotes import first_misquoted_fact

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


_FORMAT_NAMES = {"hash": "'#### <answer>'", "boxed": "\\boxed{}", "answer_is": "'The answer is <answer>'"}


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
            "5 + 3 = 8 * 2 = 16" is read as two equations, and a chain "24 - 8 = 16 = 19" also states
            16 = 19, as does a line that is only "16 = 19". An algebra equation with one-letter unknowns ("3x + 7 = 27") is checked at the values
            the text gives its unknowns ("x = 19" fails it); one whose unknowns get no value is not read. Unit words between the numbers are
            skipped: "6 screens * 8 movies/day = 48 movies/day", "8 hours/day / 2 hours/day = 4",
            "$100/day * 2 = $200/day" ("/day" is a unit, never a division by a word). They are kept,
            and the equation is not read, where skipping them would change its meaning: a
            conversion ("1/2 a cup = 4 ounces"), mixed sizes ("4 pounds - 6 ounces"), a rate
            ("3 degrees/5%").
        equation_rel_tol: Relative tolerance of an equation: float noise only by default. A right side given as a
            number with decimals holds when it is the left side correctly rounded to those decimals ("100/15 =
            6.67"); a whole number gets no margin (under the old default of 1e-3, "825 - .2 = 825" and "1000 + 1 =
            1000" held). A rounded result is also accepted when it is the left side rounded or truncated to the
            number's own decimals ("10/3 = 3.3"), or a whole number within 1 of a fractional left side
            ("10/3 = 3 boxes") when the left side is a quotient or a product, never a sum or a difference
            ("1/2 + 1 = 2" fails).
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
            (right sides of its equations) that must appear as numbers in the candidate
            (``"missing_intermediate_results"`` otherwise). 1.0 by default since gate 8: of the 75 rewrites the
            prompted best-of-8 patch kept on GSM8K ``train[:400]`` under gate 7, 10 left out an expert result, and
            9 of those 10 were wrong on the way to the right answer ("Lana can eat 6 - 3 = 3 candies" for the
            answer 3, without the 21 eaten or the 9 left; "a total of 400/25 = 16 hours" with the 400 never
            computed); the tenth merged two steps ("3*4*5 = 60 apples"). A correct rewrite by another route fails
            too: on data whose solutions take many routes, lower it or set None.
        min_step_ratio: When set, the candidate needs at least ``ceil(min_step_ratio * n)``
            arithmetic steps (counted as for ``min_reasoning_steps``), ``n`` being the expert answer's,
            else it fails with ``"too_few_steps"``: "48 + 24 = 72" is one step where the expert
            computed 48 / 2 = 24 first. The candidate's count is the larger of its sentences with a
            step and the distinct results of its equations (two equations in one sentence are two
            steps). 0.6 lets a rewrite merge one step in three.
        require_grounded_operands: Fail with ``"ungrounded_operand"`` when an operand of an arithmetic step of the
            reasoning (an equation, GSM8K ``<<...>>`` annotations included, or an expression outside one) is
            neither a number of the question (digits, number words, "twice", "half", "a dozen", the rest of a
            percentage, the conversion factors of the units it names: see
            :func:`~hf_patchdist.verifiers.math.grounding.question_values`), nor a result derived earlier in the
            candidate, nor one of :data:`~hf_patchdist.verifiers.math.grounding.COMMON_CONSTANTS`. Best-of-K
            selects candidates whose arithmetic holds but that compute with an intermediate result taken from the
            expert answer instead of deriving it ("Tom saved $120, so he paid $200 - $120 = $80"). Skipped when the
            question is unknown (``question=None``). 2.0% of the GSM8K expert answers fail it (mostly steps they do
            in their head, "The secretary takes 4 more, leaving 44", or facts they know, "ants have 6 legs").
            On by default: in Stage II a false rejection costs one row's rewrite (the row keeps its expert
            answer), a false acceptance puts an unfaithful target into the SFT set. Measured on GSM8K only; on
            other math data check the fallback reasons (``ungrounded_operand``) of a patched sample.
        reject_misquoted_facts: Fail with ``"misquoted_fact"`` when the reasoning states a fact of the question in
            the question's own words with another number: "Bekah had to read 113 pages" where the question says "had
            to read 408 pages" (a number whose three words before and word after are the question's, and whose
            value is none of the question's numbers in that place; see
            :func:`~hf_patchdist.verifiers.math.quotes.first_misquoted_fact`). Restating the question is cheap under
            the base model, and a rewrite that restates it wrong while its equations hold passed every other check.
            0.64% of the GSM8K expert answers fail it, nearly all a new quantity in the question's words ("a total
            of 20 miles" where the question's total is 12 miles). Skipped when the question is unknown.
        match_reference_rounding: Accept a rounded result (see ``equation_rel_tol``) only when the expert answer
            states a rounded result too. A rewrite that drops a term can land on the expert's whole answer by
            rounding ("13 + 3 = 16 pouches ... 16 / 6 = 3 packs" for the expert's 18 / 6 = 3); where the expert
            computes exactly, so must the rewrite. An expert answer judged against itself is unaffected.
        match_reference_format: Fail with ``"final_answer_format"`` when the final answer is not stated as the
            expert states it (``####``, ``\\boxed{}`` or "The answer is"): the rewrite becomes an SFT target, and a
            patched set that mixes formats teaches the model to answer in a form the data set's evaluation may not
            read. Best-of-K and expert iteration amplified "The answer is 10." in place of GSM8K's "#### 10" (3 of 48
            rewrites of the first RFT round, 11 of 127 of the second).
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
        equation_rel_tol: float = 1e-6,
        min_reasoning_steps: int = 1,
        require_derived_answer: bool = True,
        min_length_ratio: float = 0.25,
        min_intermediate_recall: float | None = 1.0,
        reject_repeated_equations: bool = True,
        min_step_ratio: float | None = None,
        require_grounded_operands: bool = True,
        reject_misquoted_facts: bool = True,
        match_reference_rounding: bool = True,
        match_reference_format: bool = True,
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
        if min_step_ratio is not None and not 0 <= min_step_ratio <= 1:
            raise ValueError(f"min_step_ratio must be in [0, 1] or None, got {min_step_ratio}")
        self.min_step_ratio = None if min_step_ratio is None else float(min_step_ratio)
        self.require_grounded_operands = bool(require_grounded_operands)
        self.reject_misquoted_facts = bool(reject_misquoted_facts)
        self.match_reference_rounding = bool(match_reference_rounding)
        self.match_reference_format = bool(match_reference_format)

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
            "min_step_ratio": self.min_step_ratio,
            "require_grounded_operands": self.require_grounded_operands,
            "reject_misquoted_facts": self.reject_misquoted_facts,
            "match_reference_rounding": self.match_reference_rounding,
            "match_reference_format": self.match_reference_format,
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
        stated = _contradicting_statement(text[: located.start], located.answer)
        if stated is not None:
            return _fail("contradicts_final_answer", text, f"the text states {stated!r} before the final answer {located.answer!r}")
        extra = _EXTRA_FINAL_LINE_RE.search(text[: located.start])
        if extra is not None:
            # "#### 13 = 9 + 4\n#### 13": the body ends in a second answer line that the target would keep.
            return _fail("extra_final_answer_line", text, f"{extra.group(0).strip()!r} comes before the final answer line")
        if self.check_equations:
            # Read the expert answer's roundings only when a rounded result is what the candidate needs.
            wrong = _first_wrong_equation(text, self.equation_rel_tol, rounding=not self.match_reference_rounding)
            if wrong is not None and self.match_reference_rounding and _states_rounded_results(reference, self.equation_rel_tol):
                wrong = _first_wrong_equation(text, self.equation_rel_tol)
            # Values given to unknowns are often rounded ("x = 20/3 = 6.67"): the algebra check keeps its own tolerance.
            wrong = wrong or first_unsolved_algebra(text)
            if wrong is not None:
                return _fail("wrong_equation", text, wrong)
        if self.reject_repeated_equations:
            repeated = _repeated_equation(text, reference)
            if repeated is not None:
                return _fail("repeated_equation", text, f"{repeated} is written on two lines")
        if self.min_reasoning_steps or self.min_step_ratio:
            steps = self._count_reasoning_steps(text[: located.start])
            if steps < self.min_reasoning_steps:
                return _fail(
                    "no_reasoning",
                    text,
                    f"{steps} arithmetic step(s) before the final answer, {self.min_reasoning_steps} required",
                )
            if self.min_step_ratio:
                reference_final = _locate_final_line(reference, _MATH_KINDS, final=True)
                reference_steps = self._count_reasoning_steps(reference[: reference_final.start] if reference_final else reference)
                required = math.ceil(self.min_step_ratio * reference_steps - 1e-9)
                # Two computations in one sentence ("12 / 60 = 0.2, and 0.2 * 50 = 10") are two steps here: the
                # candidate's count is also the number of distinct results of its equations.
                steps = max(steps, len(_intermediate_results(text[: located.start])))
                if steps < required:
                    return _fail(
                        "too_few_steps",
                        text,
                        f"{steps} arithmetic step(s) before the final answer, {required} required "
                        f"({self.min_step_ratio:g} x the expert answer's {reference_steps})",
                    )
        if self.require_derived_answer:
            # The reasoning, and the box of "48 + 24 = \\boxed{72}" (but not "The answer = 72").
            worked = text[: located.end] if located.kind == "boxed" else text[: located.start]
            final_value = _numeric_value(located.answer)
            if (
                final_value is not None
                and not any(_is_result(final_value[0], v) for v in _derived_results(worked, self.equation_rel_tol))
                # A conclusion that only states the answer ("Thus, Brad's zip code is 11026.") is enough where the
                # expert answer does not compute it either; where the expert computes it, so must the rewrite
                # ("so he buys 2*2 = 4 cookies. Ben spent $108." is no derivation of 108).
                and not (
                    _stated_in_conclusion(text[: located.start], final_value[0], question)
                    and not _reference_derives(reference, final_value[0], self.equation_rel_tol)
                )
            ):
                return _fail(
                    "answer_not_derived",
                    text,
                    f"the final answer {located.answer!r} is not the result of any equation or of the last "
                    "arithmetic expression",
                )
        if self.require_grounded_operands and isinstance(question, str):
            ungrounded = first_ungrounded_operand(text[: located.start], question)
            if ungrounded is not None:
                return _fail("ungrounded_operand", text, ungrounded)
        if self.reject_misquoted_facts and isinstance(question, str):
            misquoted = first_misquoted_fact(strip_calculator_annotations(text[: located.start]), question)
            if misquoted is not None:
                return _fail("misquoted_fact", text, misquoted)
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
                found = _numbers_in(strip_calculator_annotations(text))
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
        # Last: a candidate that fails on its substance is reported for that, not for its final line's form.
        if self.match_reference_format:
            reference_final = _locate_final_line(reference, _MATH_KINDS, final=True)
            if reference_final is not None and reference_final.kind != located.kind:
                return _fail(
                    "final_answer_format",
                    text,
                    f"the final answer is written as {_FORMAT_NAMES[located.kind]}, the expert's as {_FORMAT_NAMES[reference_final.kind]}",
                )
        return VerificationResult(passed=True, reason="", text=text)

    def _own_word_count(self, text: str, question: str | None) -> int:
        """Words of ``text`` (annotations removed) not copied verbatim from the question."""
        words = _word_count(text)
        if question and self.max_question_copy is not None:
            words -= _shared_runs(question, strip_calculator_annotations(text), self.copy_min_words)[1]
        return words

    @staticmethod
    def _count_reasoning_steps(body: str) -> int:
        """Sentences of ``body`` with an explicit arithmetic step.

        A step is a GSM8K annotation ``<<a*b=c>>`` (not ``<<30=30>>``), an equation with an operator,
        an arithmetic expression ``a op b`` (``+ - * / x × ÷ ^``, the words "times", "plus",
        "minus", "multiplied by", "divided by"; unit words between the numbers are allowed), or an
        algebra step with one-letter unknowns ("4 * x + 600 = 10000", "9m = 27"). A number alone is
        not a step: "he pays $55, which is 10% of his income" states, it does not compute; nor is a
        sentence whose only arithmetic is identities ("72 + 0 = 72", "72 * 1 = 72", "72 = 72").
        """
        steps = 0
        for sentence in _SENTENCE_SPLIT_RE.split(body):
            if not sentence.strip():
                continue
            if any(
                _EXPRESSION_RE.search(a.group(0)) and not _only_identity_arithmetic(_normalize_math_line(a.group(0)[2:-2]))
                for a in ANNOTATION_RE.finditer(sentence)
            ):
                steps += 1
                continue
            visible = strip_calculator_annotations(sentence)
            normalized = _normalize_math_line(visible)
            if _only_identity_arithmetic(normalized):
                continue  # "72 + 0 = 72", "72 * 1 = 72": computes nothing
            if (
                _EXPRESSION_RE.search(normalized)
                or ("=" in normalized and (_ALGEBRA_STEP_RE.search(normalized) or _UNIT_STEP_RE.search(normalized)))
                or any(_has_operator(equation.lhs) for equation in _equations_in_line(visible))
            ):
                steps += 1
        return steps


def _reference_derives(reference: str, answer: float, rel_tol: float) -> bool:
    """Whether the expert answer's reasoning computes ``answer`` (an equation or expression with that result)."""
    located = _locate_final_line(reference, _MATH_KINDS, final=True)
    worked = reference[: located.start] if located else reference
    return any(_is_result(answer, v) for v in _derived_results(worked, rel_tol))


# A GSM8K answer marker in the reasoning: only the final line may start with "####".
_EXTRA_FINAL_LINE_RE = re.compile(r"^[ \t]*####[^\n]*", re.MULTILINE)
# "The answer is 20", "The final answer is: $20": an answer stated in the reasoning, before the final-answer line.
_STATED_ANSWER_RE = re.compile(r"\banswer\s+(?:is|=)\s*:?\s*\$?\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)", re.IGNORECASE)


def _contradicting_statement(body: str, final: str) -> str | None:
    """The first answer stated in ``body`` that is not equivalent to the ``final`` one, or None.

    A candidate whose equations hold and whose ``####`` line matches the reference can still conclude something
    else ("18 + 2 = 20\nThe final answer is 20 meters.\n#### 6"): its reasoning does not arrive at its answer.
    """
    for match in _STATED_ANSWER_RE.finditer(strip_calculator_annotations(body)):
        if not math_answers_equal(match.group(1), final):
            return match.group(0)
    return None
