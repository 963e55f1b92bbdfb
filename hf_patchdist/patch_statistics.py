"""Patch statistics of a patched data set, defined once and used by the CLI, trainers and cards.

* **target NLL**: mean ``patch_nll_kept`` over all rows (fallbacks included);
* **accepted NLL**: mean ``patch_nll_kept`` over the rewritten rows only (copies of the expert answer,
  ``patch_source == "copy"``, are counted apart and left out);
* **original NLL**: mean ``patch_nll_original`` over all rows (the expert answers).

Rows whose answer could not be scored (missing/invalid input) have no NLL and are left out of
the means; they are still counted in ``rows`` and in the fallback reasons. Rows without a question or
an answer (:data:`NO_TARGET_REASONS`) have nothing to train on: ``DistributionPatchTrainer`` leaves them
out of SFT, and ``dropped`` counts them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


NO_TARGET_REASONS = frozenset({"missing_question", "missing_answer", "empty_question", "empty_answer"})
"""Fallback reasons of rows with no question or no answer (None or blank): SFT would train them on an empty
target (or an answer to an empty prompt), so they are dropped from the training set."""


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(kept) / len(kept) if kept else None


@dataclass
class PatchStatistics:
    """Counts and NLL figures of a patched data set.

    Attributes:
        rows: Number of rows.
        rewritten: Rows whose target is a rewrite.
        copied: Rows whose accepted candidate was the expert answer itself once GSM8K annotations are
            removed (``patch_source == "copy"``): feasible, but no rewrite.
        fallback: Rows that kept the expert answer.
        fallback_reasons: Fallback count by reason.
        acceptance_rate: ``rewritten / rows`` (copies not included).
        original_nll: Mean pi_0 NLL of the expert answers.
        target_nll: Mean pi_0 NLL of the kept targets over all rows.
        accepted_nll: Mean pi_0 NLL of the kept targets over rewritten rows (None if none).
        accepted_original_nll: Mean pi_0 NLL of the expert answers of the rewritten rows.
        dropped: Rows with no question or no answer (a fallback reason in :data:`NO_TARGET_REASONS`), which
            SFT leaves out; they are still counted in ``rows``, ``fallback`` and ``fallback_reasons``.
        feasible_per_row: Feasible candidates per row (``patch_num_feasible``), mean over all rows; None for a
            set patched before the column existed.
        rows_with_feasible: Rows with at least one feasible candidate (some may still fall back, e.g.
            ``higher_nll_than_expert``); None without ``patch_num_feasible``.
    """

    rows: int = 0
    rewritten: int = 0
    fallback: int = 0
    copied: int = 0
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    acceptance_rate: float = 0.0
    original_nll: float | None = None
    target_nll: float | None = None
    accepted_nll: float | None = None
    accepted_original_nll: float | None = None
    dropped: int = 0
    feasible_per_row: float | None = None
    rows_with_feasible: int | None = None

    @classmethod
    def from_columns(
        cls,
        sources: Sequence[str],
        reasons: Sequence[str],
        nll_original: Sequence[float | None],
        nll_kept: Sequence[float | None],
        num_feasible: Sequence[int] | None = None,
    ) -> PatchStatistics:
        rows = len(sources)
        rewritten_idx = [i for i, s in enumerate(sources) if s == "rewrite"]
        copied = sum(s == "copy" for s in sources)
        reasons_count = Counter(r for s, r in zip(sources, reasons) if s not in ("rewrite", "copy"))
        return cls(
            rows=rows,
            rewritten=len(rewritten_idx),
            copied=copied,
            fallback=rows - len(rewritten_idx) - copied,
            fallback_reasons=dict(reasons_count.most_common()),
            acceptance_rate=len(rewritten_idx) / rows if rows else 0.0,
            original_nll=_mean(nll_original),
            target_nll=_mean(nll_kept),
            accepted_nll=_mean(nll_kept[i] for i in rewritten_idx),
            accepted_original_nll=_mean(nll_original[i] for i in rewritten_idx),
            dropped=sum(count for reason, count in reasons_count.items() if reason in NO_TARGET_REASONS),
            feasible_per_row=_mean(num_feasible) if num_feasible is not None else None,
            rows_with_feasible=sum(count > 0 for count in num_feasible) if num_feasible is not None else None,
        )

    @classmethod
    def from_dataset(cls, dataset: Any) -> PatchStatistics:
        """Read the provenance columns of a patched ``datasets.Dataset``."""
        missing = [c for c in ("patch_source", "patch_reason", "patch_nll_original", "patch_nll_kept") if c not in dataset.column_names]
        if missing:
            raise ValueError(f"Not a patched data set: columns {missing} are missing (columns: {dataset.column_names}).")
        return cls.from_columns(
            dataset["patch_source"],
            dataset["patch_reason"],
            dataset["patch_nll_original"],
            dataset["patch_nll_kept"],
            dataset["patch_num_feasible"] if "patch_num_feasible" in dataset.column_names else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_log_dict(self, prefix: str = "patch/") -> dict[str, float]:
        """Flat numeric metrics for a trainer's ``log``."""
        metrics: dict[str, float] = {
            f"{prefix}rows": float(self.rows),
            f"{prefix}rewritten": float(self.rewritten),
            f"{prefix}copied": float(self.copied),
            f"{prefix}fallback": float(self.fallback),
            f"{prefix}acceptance_rate": self.acceptance_rate,
            f"{prefix}dropped": float(self.dropped),
        }
        for name in ("original_nll", "target_nll", "accepted_nll", "feasible_per_row"):
            value = getattr(self, name)
            if value is not None:
                metrics[f"{prefix}{name}"] = value
        for reason, count in self.fallback_reasons.items():
            metrics[f"{prefix}fallback_{reason}"] = float(count)
        return metrics

    def to_markdown(self) -> str:
        """A small markdown table, for cards and reports."""

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        lines = [
            "| statistic | value |",
            "|---|---|",
            f"| rows | {self.rows} |",
            f"| rewritten | {self.rewritten} ({self.acceptance_rate:.1%}) |",
            f"| copy of the expert answer (annotations removed) | {self.copied} |",
            f"| fallback | {self.fallback} |",
        ]
        if self.dropped:
            lines.append(f"| dropped from SFT (no question or answer) | {self.dropped} |")
        if self.feasible_per_row is not None:
            lines.append(f"| feasible candidates per row (rows with one) | {self.feasible_per_row:.2f} ({self.rows_with_feasible}) |")
        lines += [f"| fallback: {reason} | {count} |" for reason, count in self.fallback_reasons.items()]
        lines += [
            f"| mean pi_0 NLL of the expert answers | {fmt(self.original_nll)} |",
            f"| target NLL (kept answers, all rows) | {fmt(self.target_nll)} |",
            f"| accepted NLL (rewritten rows) | {fmt(self.accepted_nll)} |",
            f"| expert-answer NLL of the rewritten rows | {fmt(self.accepted_original_nll)} |",
        ]
        return "\n".join(lines)

    def summary(self) -> str:
        """Human-readable summary printed by the CLI."""

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        reasons = ", ".join(f"{r}: {c}" for r, c in self.fallback_reasons.items()) or "none"
        if self.dropped:
            reasons += f" (dropped from SFT, no question or answer: {self.dropped})"
        feasible = (
            f"  feasible candidates per row: {self.feasible_per_row:.2f} ({self.rows_with_feasible} rows with one)"
            if self.feasible_per_row is not None
            else ""
        )
        return (
            f"rows: {self.rows}  rewritten: {self.rewritten} ({self.acceptance_rate:.1%})  copies: {self.copied}  "
            f"fallback: {self.fallback}{feasible}\n"
            f"fallback reasons: {reasons}\n"
            f"mean pi_0 NLL  expert answers: {fmt(self.original_nll)}  kept targets: {fmt(self.target_nll)}  "
            f"accepted rewrites: {fmt(self.accepted_nll)} (their expert answers: {fmt(self.accepted_original_nll)})"
        )
