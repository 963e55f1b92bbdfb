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
"""The math gate: final answers, the arithmetic of the reasoning, and :class:`MathVerifier`.

Modules (each imports only the ones listed before it, and base, final_answer and text_checks):

- :mod:`~hf_patchdist.verifiers.math.answers`: final-answer markers, :func:`extract_math_answer`,
  :func:`math_answers_equal`;
- :mod:`~hf_patchdist.verifiers.math.units`: unit words between numbers and operators;
- :mod:`~hf_patchdist.verifiers.math.arithmetic`: normalising, tokenizing, parsing and evaluating
  the arithmetic of one line;
- :mod:`~hf_patchdist.verifiers.math.equations`: the explicit equations of a solution, and whether
  they hold;
- :mod:`~hf_patchdist.verifiers.math.derivation`: what the reasoning computes, and whether the
  final answer is one of those results;
- :mod:`~hf_patchdist.verifiers.math.grounding`: whether every number a step computes with comes from the
  question, an earlier result or a common constant;
- :mod:`~hf_patchdist.verifiers.math.algebra`: whether the values a solution gives its one-letter unknowns solve its
  own equations;
- :mod:`~hf_patchdist.verifiers.math.quotes`: whether the facts of the question that a solution restates keep the
  question's numbers;
- :mod:`~hf_patchdist.verifiers.math.verifier`: :class:`MathVerifier`.
"""

from __future__ import annotations

from .answers import extract_math_answer, math_answers_equal
from .verifier import MathVerifier

__all__ = ["MathVerifier", "extract_math_answer", "math_answers_equal"]
