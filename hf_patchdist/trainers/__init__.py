"""Trainers as TRL pairs them: ``<method>_config.py`` with the config dataclass, ``<method>_trainer.py`` with the trainer.

The names are imported on first use: ``from hf_patchdist.trainers import DistributionPatchConfig`` loads the SFT
config and TRL's ``SFTConfig`` only, not the GRPO stack (``hf-patchdist sft --help`` stays quick, and the other way
round for ``train-rewriter``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..import_utils import lazy_exports


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


__getattr__, __dir__ = lazy_exports(__name__, _NAME_TO_MODULE, DEPRECATED_NAMES)
