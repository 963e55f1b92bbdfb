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
"""Task-consistency gate: decide whether a rewritten target still solves the task.

A rewrite is kept only when it passes a verifier; otherwise the expert answer is kept (the
Generate-Verify-Fallback stage) and, during GRPO, the candidate gets ``r_task = 0``.

Checking only the final answer is not enough: with a small rewriter most "correct" rewrites of a
GSM8K solution were bare answers ("The answer is 40."), wrong arithmetic on the way to the right
number, or the instruction echoed after the answer. Short generic text has a low NLL under the
base model, so the distribution reward would even prefer them. Every verifier therefore runs some
generic checks first (empty, truncated, talks about the rewriting, echoes the instruction, text
after the final answer, copies the question, repeats a line: a GRPO-trained rewriter learned to
lengthen its rewrites with question text and repeated steps, which are cheap under the base model),
and :class:`MathVerifier` additionally checks every explicit equation,
requires explicit arithmetic steps, a final answer that the reasoning arrives at, and a minimum
length.

Reason codes (``VerificationResult.reason``):

- generic, in this order: ``"empty"``, ``"truncated"``, ``"trailing_text"`` (strict mode only),
  ``"mentions_rewriting"``, ``"echoes_instruction"``, ``"restates_question"`` (copies more of the
  question than allowed), ``"copies_reference"`` (keeps more of the expert answer than allowed),
  ``"repeated_line"``, then the reference checks ``"invalid_reference"`` /
  ``"reference_without_final_answer"``;
- answer checks: ``"no_final_answer"``, ``"wrong_final_answer"``;
- math only, in this order: ``"wrong_equation"`` (an explicit equation does not hold),
  ``"repeated_equation"`` (the same equation on two lines, where the expert's does not repeat it),
  ``"no_reasoning"`` (no arithmetic step; identities such as ``72 + 0 = 72`` are none),
  ``"too_few_steps"`` (fewer steps than ``min_step_ratio`` of the expert's), ``"answer_not_derived"`` (the final answer is not the
  result of the reasoning), ``"ungrounded_operand"`` (a step computes with a number that is neither in the question nor
  derived before it, ``require_grounded_operands``), ``"misquoted_fact"`` (the reasoning states a fact in the question's
  words with another number: "Bekah had to read 113 pages" for the question's 408, ``reject_misquoted_facts``), ``"contradicts_final_answer"`` (the reasoning states another answer, "The answer is 20", before
  the final line), ``"extra_final_answer_line"`` (a ``####`` line before the final one: "#### 13 = 9 + 4"), ``"too_short"``, ``"missing_intermediate_results"`` (an intermediate result of the expert answer never appears; on by
  default since gate 8, ``min_intermediate_recall``), ``"final_answer_format"`` (an otherwise feasible candidate states
  its final answer in another form than the expert: ``####``, ``\\boxed{}`` or "The answer is"; gate 9,
  ``match_reference_format``);
- :class:`CallableVerifier`: ``"rejected"`` unless the callable gives its own reason.

Final-answer lines, and when :meth:`Verifier.final_answer_end` reports one as complete: see
:mod:`hf_patchdist.verifiers.final_answer`.

Modules (each imports only the ones listed before it):

- :mod:`~hf_patchdist.verifiers.presets`: :data:`GRPO_GATE`, :func:`stage_ii_gate`, :data:`GATE_VERSION`,
  :data:`DEFAULT_META_PHRASES`;
- :mod:`~hf_patchdist.verifiers.text_checks`: text helpers of the generic checks, among them the one
  word tokeniser of every text check, :func:`reference_similarity` and :func:`is_reference_copy`;
- :mod:`~hf_patchdist.verifiers.final_answer`: locating final-answer lines;
- :mod:`~hf_patchdist.verifiers.base`: :class:`VerificationResult`, :class:`Verifier` (the generic
  checks) and the class registry :data:`VERIFIERS`;
- :mod:`~hf_patchdist.verifiers.math`: :class:`MathVerifier`, :func:`extract_math_answer`,
  :func:`math_answers_equal` and the arithmetic they check;
- :mod:`~hf_patchdist.verifiers.choice`: :class:`ChoiceVerifier`;
- :mod:`~hf_patchdist.verifiers.simple`: :class:`ExactMatchVerifier`, :class:`RegexVerifier`,
  :class:`CallableVerifier`;
- :mod:`~hf_patchdist.verifiers.registry`: :func:`get_verifier`, :func:`check_verifier_trust` (a callable named
  in a file needs ``trust_remote_code=True``).
"""

from __future__ import annotations

# The verifiers register themselves when their module is imported; this order keeps the registry's
# order (math, choice, exact, regex, callable).
from .base import VERIFIERS, VerificationResult, Verifier
from .math import MathVerifier, extract_math_answer, math_answers_equal
from .choice import ChoiceVerifier
from .simple import CallableVerifier, ExactMatchVerifier, RegexVerifier
from .presets import DEFAULT_META_PHRASES, GATE_VERSION, GRPO_GATE, stage_ii_gate
from .registry import UntrustedVerifierError, check_verifier_trust, get_verifier
from .text_checks import is_reference_copy, reference_similarity

__all__ = [
    "DEFAULT_META_PHRASES",
    "GATE_VERSION",
    "GRPO_GATE",
    "VERIFIERS",
    "CallableVerifier",
    "ChoiceVerifier",
    "ExactMatchVerifier",
    "MathVerifier",
    "RegexVerifier",
    "UntrustedVerifierError",
    "VerificationResult",
    "Verifier",
    "check_verifier_trust",
    "extract_math_answer",
    "get_verifier",
    "is_reference_copy",
    "math_answers_equal",
    "reference_similarity",
    "stage_ii_gate",
]
