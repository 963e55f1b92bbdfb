"""Best-of-K selection: which of a row's judged candidates becomes its training target.

Generation and the gate produce, per row, a :class:`JudgedRow`: every candidate with the gate's verdict
and, for a feasible one, its pi_0 NLL given QA(q). :func:`select_target` then keeps the feasible
candidate with the lowest NLL, or falls back to the expert answer. Selection is separate from
generation so that best-of-k for every k <= K can be read off one set of K candidates (the first k of
them): that is how ``benchmarks/best_of_k.py`` measures K in {1, 4, 8, 16} from one sampling pass.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ..verifiers import is_reference_copy
from .limits import TOO_LONG, limit_was_too_short


HIGHER_NLL_THAN_EXPERT = "higher_nll_than_expert"
"""Fallback reason of a row whose best feasible candidate is no closer to pi_0 than the expert answer (with
:attr:`~hf_patchdist.rewriter.RewriterConfig.require_lower_nll`): replacing the answer would raise its NLL."""


@dataclass
class JudgedCandidate:
    """One generated candidate and the gate's verdict.

    Attributes:
        text: The text as generated.
        passed: Whether it passed the task-consistency gate.
        reason: The gate's reason when rejected, else ``""``.
        detail: The gate's detail when rejected, else ``""``.
        kept_text: The text the gate passed (it may trim what follows the final-answer line); None when rejected.
        nll: pi_0 NLL of ``kept_text`` given QA(q); NaN when rejected (rejected candidates are not scored).
    """

    text: str
    passed: bool
    reason: str = ""
    detail: str = ""
    kept_text: str | None = None
    nll: float = math.nan


@dataclass
class JudgedRow:
    """One row's candidates, judged and scored.

    Attributes:
        reference: The expert answer (None when the row has none).
        original_nll: pi_0 NLL of the expert answer (NaN when it could not be scored).
        reason: Why the row was not generated at all (bad input, an expert answer the gate itself
            refuses, ``too_long``); None when it was.
        candidates: The candidates in generation order (empty when ``reason`` is set).
        expert_tokens: Length of the expert answer in tokens as shown in the prompt (None when not generated).
        limit: The row's new-token limit (None when not generated).
    """

    reference: str | None
    original_nll: float = math.nan
    reason: str | None = None
    candidates: list[JudgedCandidate] = field(default_factory=list)
    expert_tokens: int | None = None
    limit: int | None = None

    def num_feasible(self, k: int | None = None) -> int:
        """Feasible candidates among the first ``k`` (all when None)."""
        return sum(c.passed for c in self.candidates[:k])


@dataclass
class Selection:
    """What :func:`select_target` keeps for a row.

    Attributes:
        source: ``"rewrite"``, ``"copy"`` (the kept candidate is the expert answer with annotations removed) or
            ``"fallback"``.
        reason: Empty unless ``source == "fallback"``; then why.
        text: The kept candidate's text; None for a fallback (the expert answer stays).
        nll: pi_0 NLL of what is kept (the expert answer's for a fallback).
        num_feasible: Feasible candidates among those considered.
    """

    source: str
    reason: str
    text: str | None
    nll: float
    num_feasible: int


def select_target(row: JudgedRow, *, k: int | None = None, require_lower_nll: bool = True) -> Selection:
    """Best-of-k: the feasible candidate with the lowest pi_0 NLL among the row's first ``k``, or a fallback.

    Args:
        row: The judged row.
        k: Consider only the first ``k`` candidates (all when None): best-of-k from a larger sample.
        require_lower_nll: Keep a candidate only when its NLL is below the expert answer's; otherwise the
            row falls back with reason :data:`HIGHER_NLL_THAN_EXPERT`. A row whose expert answer could not be
            scored has nothing to compare with and keeps its best candidate.

    Example:
        ```python
        >>> row = JudgedRow("48/2 = 24\\n#### 24", original_nll=1.2, candidates=[
        ...     JudgedCandidate("Half of 48 is 24.\\n#### 24", True, kept_text="Half of 48 is 24.\\n#### 24", nll=0.9),
        ...     JudgedCandidate("#### 24", False, reason="no_reasoning")])
        >>> select_target(row).source, select_target(row).nll
        ('rewrite', 0.9)
        >>> select_target(row, k=0).reason
        'no_candidates'

        ```
    """
    considered = row.candidates if k is None else row.candidates[:k]
    feasible = [c for c in considered if c.passed]
    if row.reason is not None:
        return Selection("fallback", row.reason, None, row.original_nll, 0)
    if not feasible:
        return Selection("fallback", _rejection_reason(row, considered), None, row.original_nll, 0)
    best = min(feasible, key=lambda c: c.nll if not math.isnan(c.nll) else math.inf)
    if require_lower_nll and not math.isnan(row.original_nll) and not best.nll < row.original_nll:
        return Selection("fallback", HIGHER_NLL_THAN_EXPERT, None, row.original_nll, len(feasible))
    source = "copy" if is_reference_copy(best.kept_text, row.reference) else "rewrite"
    return Selection(source, "", best.kept_text, best.nll, len(feasible))


def _rejection_reason(row: JudgedRow, considered: list[JudgedCandidate]) -> str:
    """The most common gate reason of the rejected candidates, ``too_long`` when the limit could not hold the answer."""
    if not considered:
        return "no_candidates"
    reason = Counter(c.reason for c in considered).most_common(1)[0][0] or "no_feasible_candidate"
    if row.expert_tokens is not None and row.limit is not None and limit_was_too_short(reason, row.expert_tokens, row.limit):
        return TOO_LONG
    return reason
