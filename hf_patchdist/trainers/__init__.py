"""Trainers: Stage I (GRPO rewriter training) and Stage II (SFT on patched targets, a drop-in SFTTrainer)."""

from .patch_sft_config import PatchSFTConfig
from .patch_sft_trainer import DistributionPatchTrainer
from .rewriter_config import RewriterTrainingConfig
from .rewriter_trainer import RewriterTrainer

__all__ = ["DistributionPatchTrainer", "PatchSFTConfig", "RewriterTrainer", "RewriterTrainingConfig"]
