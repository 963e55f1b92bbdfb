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
"""Gate presets: ready-made verifier configurations and the defaults of the generic checks.

A preset is a :meth:`~hf_patchdist.verifiers.Verifier.to_dict` style dict that
:func:`~hf_patchdist.verifiers.get_verifier` turns into a verifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GATE_VERSION = 13
"""Version of the gate's verdicts: bump it whenever a change to the checks can change a verdict under an
unchanged configuration (a check fixed, words tokenised differently). The patch cache key holds it, so that
patched sets cached under an older gate are not reused. 2: Unicode words, identity steps, copies measured
by the longest common subsequence of words. 3: a final answer only stated in the conclusion counts as derived
only when the expert answer does not compute it either; an answer stated in the reasoning that differs from the final
one fails (``contradicts_final_answer``). 4: the math verifier requires grounded operands by default (``require_grounded_operands``:
every number a step computes with is in the question, derived earlier or a common constant), so the default
Stage II gate and rewriters saved before it have the check too. 5: its constants are 1 and 2 only (a time factor such
as 12 or 7 needs its unit in the question). 6: a chain of "=" is checked link by link ("24 - 8 = 16 = 19" fails), and an
algebra equation is checked at the values the text gives its unknowns ("3x + 7 = 27, so x = 19" fails). 7: a fact of the
question restated in its words with another number fails (``reject_misquoted_facts``: "Bekah had to read 113 pages"
for the question's 408). 8: an expression after "increased by" (or any "by" but "divided/multiplied by") is checked; a rounded
result holds only for a quotient or product and only where the expert answer rounds too (``match_reference_rounding``:
"16 / 6 = 3 packs" where the expert computed 18 / 6 = 3); a mixed number "1 1/2" is one number; the math verifier requires
every intermediate result of the expert answer by default (``min_intermediate_recall=1.0``; a rewriter saved without the
option gets it too). 9: an ascending "a-b" without spaces is a range ("Weeks 1-2") only after a label: at the start of a line,
after a verb that states a result or after another "=", it is a subtraction ("The total is 300-400 = 300" fails). 10: a
number right after "=" that begins an expression ("= 4*8 = 32") is an operand, not a result: it no longer derives a final
answer (a final 4 whose step 32/8 was never written had passed) nor grounds a later operand. 11: a mixed number "1 1/2" on
the left side is read ("21 * 1 1/2 = 21 birds" was skipped); ``equation_rel_tol`` defaults to 1e-6 and a stated decimal holds
when correctly rounded ("825 - .2 = 825" held within 1e-3); an equation that no value of its one unknown solves fails ("x = 7 + x"). 12: a known value times or divided by 100 grounds
an operand only where cents are named ("20-12 = 8" was grounded by 1200 minutes / 100); a number after "=" that begins an
expression in an unknown ("C = 30 * C") derives no final answer; an equation in a parenthetical remark is read. 13: a unit
label in parentheses after a number is a unit word ("10 (Pets) * 5 (Groceries) = 50" was not read)."""

GRPO_GATE: dict[str, Any] = {
    "name": "math",
    "strict": True,
    "max_reference_copy": 0.7,
    "min_step_ratio": 0.6,
    "require_grounded_operands": True,
}
"""The default gate of GRPO training: strict (trimming trailing text in the reward would still
train on it), failing copies of the expert answer (more than 70% of its words kept in order: the
cheapest feasible candidate, which GRPO otherwise converges on; on GSM8K ``train[800:1000]`` the
accepted rewrites above 70% were the expert answer with a line dropped or added or a few words
changed, those below written differently: see docs/results.md) and candidates
that skip the expert's steps (fewer than 0.6 x its arithmetic steps: "48 + 24 = 72" where the expert
first computed 48 / 2 = 24), and candidates that compute with a number they never derived ("Tom saved $120, so he
paid $200 - $120 = $80", the 120 taken from the expert answer; ``require_grounded_operands``, kept in Stage II)."""

GRPO_ONLY_OPTIONS: dict[str, Any] = {"strict": False, "max_reference_copy": None, "min_step_ratio": None}
"""The options of a GRPO gate that a rewriter does not keep for Stage II, with their Stage II values."""


def stage_ii_gate(gate: Mapping[str, Any]) -> dict[str, Any]:
    """The Stage II gate of a rewriter trained under ``gate`` (a ``Verifier.to_dict()``): the same checks,
    without the GRPO-only ones.

    Stage II trims text after the final-answer line (the trimmed text is never kept, so it need not
    fail), keeps a copy of the expert answer (a correct answer: keeping it changes nothing, and
    rejecting it only falls back to the expert answer itself; the Rewriter labels an exact copy
    ``patch_source="copy"``) and does not compare step counts with the expert's (a correct solution
    in fewer steps is a correct target). These checks exist to close cheap ways through the GRPO
    reward, not to judge a rewrite. Every other check is kept, ``require_grounded_operands`` among them: a
    candidate that computes with a number it never derived (taken from the expert answer, which the rewriter
    sees) is no correct target, in GRPO or in Stage II.
    """
    return {**gate, **{option: value for option, value in GRPO_ONLY_OPTIONS.items() if option in gate}}

DEFAULT_META_PHRASES: tuple[str, ...] = (
    "original solution",
    "original answer",
    "original response",
    "original text",
    "original explanation",
    "original reasoning",
    "original version",
    "rewrite",
    "rewrites",
    "rewritten",
    "rewrote",
    "rewriting",
    "rephrase",
    "rephrased",
    "rephrasing",
    "paraphrase",
    "paraphrased",
    "paraphrasing",
    "expert answer",
    "expert's answer",
    "expert solution",
    "expert's solution",
    "reference answer",
    "reference solution",
    "given solution",
    "provided solution",
    "provided answer",
    "in my own words",
    "in your own words",
    "in our own words",
)
"""Phrases (case-insensitive, whole words) that betray text about the rewriting task itself."""
