"""Trainers as TRL pairs them: ``<method>_config.py`` with the config dataclass, ``<method>_trainer.py`` with the trainer.

The names are imported on first use: ``from hf_patchdist.trainers import DistributionPatchConfig`` loads the SFT
config and TRL's ``SFTConfig`` only, not the GRPO stack (``hf-patchdist sft --help`` stays quick, and the other way
round for ``train-rewriter``).
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any


# public name -> module (relative to this package) that defines it
_NAME_TO_MODULE = {
    "DistributionPatchConfig": "distribution_patch_config",
    "DistributionPatchTrainer": "distribution_patch_trainer",
    "RewriterGRPOConfig": "rewriter_grpo_config",
    "RewriterTrainer": "rewriter_trainer",
}

__all__ = ["DistributionPatchConfig", "DistributionPatchTrainer", "RewriterGRPOConfig", "RewriterTrainer"]

# Names of the 0.1 release, kept for one release.
DEPRECATED_NAMES = {"PatchSFTConfig": "DistributionPatchConfig", "RewriterTrainingConfig": "RewriterGRPOConfig"}

if TYPE_CHECKING:
    from .distribution_patch_config import DistributionPatchConfig
    from .distribution_patch_trainer import DistributionPatchTrainer
    from .rewriter_grpo_config import RewriterGRPOConfig
    from .rewriter_trainer import RewriterTrainer


def __getattr__(name: str) -> Any:
    if name in DEPRECATED_NAMES:
        new = DEPRECATED_NAMES[name]
        warnings.warn(
            f"`{name}` is deprecated and will be removed in the next release; use `{new}` (same class).",
            FutureWarning,
            stacklevel=2,
        )
        return __getattr__(new)
    module = _NAME_TO_MODULE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access costs nothing
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
