"""What GRPO's rollouts did over a window of steps: the summary :class:`RewriterTrainer` logs every N steps.

The per-step metrics of :class:`~hf_patchdist.rewards.PatchReward` (``patch/...``) are noisy at two prompts
a step; a window of steps says whether the gate lets anything through, whether the groups give GRPO a
gradient at all, and which cheap way through the gate the policy is trying. The summary is built from
what the reward already computed (its :class:`~hf_patchdist.rewards.CandidateEvaluation` and totals, handed
to it as a listener), not recomputed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..rewards import CandidateEvaluation


SUMMARY_PREFIX = "patch_summary/"
COPY_SHARE_THRESHOLD = 0.5
"""A feasible candidate that keeps this share or more of the expert answer's words in order counts as a copy."""
ZERO_SPREAD_TOLERANCE = 1e-6
"""A group whose rewards differ by less than this gives GRPO no gradient (TRL's advantage is ~0 for all)."""


class RolloutSummary:
    """Counts over the reward calls of a window of steps; :meth:`metrics` turns them into logged fractions.

    Call it as ``PatchReward``'s listener (``summary(evaluation, totals)``); :meth:`counts` is a plain dict, so
    the counts of several processes can be gathered and merged (:meth:`metrics` takes a list of them).

    Example:
        ```python
        summary = RolloutSummary()
        reward.listeners.append(summary)
        ...  # training steps
        metrics = RolloutSummary.metrics([summary.counts()])
        print(summary_line(metrics, first_step=1, last_step=10))
        ```
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.candidates = 0
        self.feasible = 0
        self.groups = 0
        self.zero_spread_groups = 0
        self.length_sum = 0
        self.length_count = 0
        self.copies = 0
        self.similarity_sum = 0.0
        self.rejections: Counter[str] = Counter()

    def __call__(self, evaluation: CandidateEvaluation, totals: Sequence[float | None]) -> None:
        self.candidates += len(evaluation.feasible)
        self.feasible += sum(evaluation.feasible)
        for group in evaluation.groups:
            values = [float(totals[i] or 0.0) for i in group]
            self.groups += 1
            self.zero_spread_groups += int(max(values) - min(values) < ZERO_SPREAD_TOLERANCE)
        self.length_sum += sum(evaluation.completion_lengths)
        self.length_count += len(evaluation.completion_lengths)
        shares = [s for s in evaluation.reference_similarity if s is not None]
        self.copies += sum(share >= COPY_SHARE_THRESHOLD for share in shares)
        self.similarity_sum += sum(shares)
        self.rejections.update(reason for reason in evaluation.reasons if reason)

    def counts(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "feasible": self.feasible,
            "groups": self.groups,
            "zero_spread_groups": self.zero_spread_groups,
            "length_sum": self.length_sum,
            "length_count": self.length_count,
            "copies": self.copies,
            "similarity_sum": self.similarity_sum,
            "rejections": dict(self.rejections),
        }

    @staticmethod
    def metrics(parts: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """The logged summary of the merged counts (every process's), keys under ``patch_summary/``."""
        total: Counter[str] = Counter()
        rejections: Counter[str] = Counter()
        for part in parts:
            total.update({key: value for key, value in part.items() if key != "rejections"})
            rejections.update(part.get("rejections", {}))
        candidates, feasible, groups = total["candidates"], total["feasible"], total["groups"]
        metrics = {
            "candidates": float(candidates),
            "feasible_fraction": feasible / candidates if candidates else 0.0,
            "zero_spread_fraction": total["zero_spread_groups"] / groups if groups else 0.0,
            "mean_completion_length": total["length_sum"] / total["length_count"] if total["length_count"] else 0.0,
            "copy_share": total["copies"] / feasible if feasible else 0.0,
            "reference_similarity": total["similarity_sum"] / feasible if feasible else 0.0,
        }
        for reason, count in sorted(rejections.items()):
            metrics[f"rejected/{reason}"] = count / candidates
        return {SUMMARY_PREFIX + key: value for key, value in metrics.items()}


def summary_line(metrics: Mapping[str, float], first_step: int, last_step: int) -> str:
    """One readable line of a window's summary (``metrics`` as :meth:`RolloutSummary.metrics` returns it)."""

    def get(key: str) -> float:
        return float(metrics.get(SUMMARY_PREFIX + key, 0.0))

    rejected = sorted(
        ((key.removeprefix(SUMMARY_PREFIX + "rejected/"), value) for key, value in metrics.items() if key.startswith(SUMMARY_PREFIX + "rejected/")),
        key=lambda item: -item[1],
    )
    reasons = ", ".join(f"{reason} {value:.0%}" for reason, value in rejected) or "none"
    return (
        f"[patch] steps {first_step}-{last_step}: feasible {get('feasible_fraction'):.1%} of {int(get('candidates'))}, "
        f"zero-spread groups {get('zero_spread_fraction'):.0%}, length {get('mean_completion_length'):.0f} tokens, "
        f"copies {get('copy_share'):.0%} of feasible (similarity {get('reference_similarity'):.2f}), rejected: {reasons}"
    )
