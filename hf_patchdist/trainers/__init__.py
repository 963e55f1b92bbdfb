"""Trainers as TRL pairs them: ``<method>_config.py`` with the config dataclass, ``<method>_trainer.py`` with the trainer."""

from __future__ import annotations

import warnings
from typing import Any

from .distribution_patch_config import DistributionPatchConfig
from .distribution_patch_trainer import DistributionPatchTrainer
from .rewriter_grpo_config import RewriterGRPOConfig
from .rewriter_trainer import RewriterTrainer


__all__ = ["DistributionPatchConfig", "DistributionPatchTrainer", "RewriterGRPOConfig", "RewriterTrainer"]

# Names of the 0.1 release, kept for one release.
DEPRECATED_NAMES = {"PatchSFTConfig": "DistributionPatchConfig", "RewriterTrainingConfig": "RewriterGRPOConfig"}


def __getattr__(name: str) -> Any:
    if name in DEPRECATED_NAMES:
        new = DEPRECATED_NAMES[name]
        warnings.warn(
            f"`{name}` is deprecated and will be removed in the next release; use `{new}` (same class).",
            FutureWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
