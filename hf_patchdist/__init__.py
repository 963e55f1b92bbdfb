"""hf-patchdist: rewrite SFT targets into the model's own words so fine-tuning forgets less.

Implements "Patch the Distribution Mismatch: RL Rewriting Agent for Stable Off-Policy SFT"
(arXiv 2602.11220) on the Hugging Face stack.

The names below are imported on first use, as transformers and TRL do: ``import hf_patchdist`` loads
neither torch, transformers, datasets nor TRL, and a trainer brings TRL in only when it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .import_utils import lazy_exports


__version__ = "0.1.0"

# public name -> module (relative to this package) that defines it
_IMPORT_STRUCTURE: dict[str, list[str]] = {
    "formats": ["DatasetFormat", "FormatSpec", "detect_format"],
    "generation": ["GenerationBackend", "GenerationSettings", "StaticBackend", "TransformersBackend", "VLLMBackend"],
    "models": ["DEFAULT_MODEL", "load_model_and_tokenizer", "resolve_model_path"],
    "rewriter": ["PATCH_COLUMNS", "PatchResult", "Rewriter", "RewriterConfig"],
    "hub": ["push_patched_dataset", "push_rewriter"],
    "judge": ["LLMJudge"],
    "rewards": ["DiversityReward", "PatchReward", "QAStyleAlignmentReward", "TaskConsistencyReward"],
    "scoring": ["QAScorer"],
    "patch_statistics": ["PatchStatistics"],
    "trainers": ["DistributionPatchConfig", "DistributionPatchTrainer", "RewriterGRPOConfig", "RewriterTrainer"],
    "verifiers": [
        "CallableVerifier",
        "ChoiceVerifier",
        "ExactMatchVerifier",
        "MathVerifier",
        "RegexVerifier",
        "VerificationResult",
        "Verifier",
        "get_verifier",
    ],
}
_NAME_TO_MODULE = {name: module for module, names in _IMPORT_STRUCTURE.items() for name in names}
# Names of the 0.1 release, kept for one release.
_DEPRECATED = {"PatchSFTConfig": "DistributionPatchConfig", "RewriterTrainingConfig": "RewriterGRPOConfig"}

__all__ = [
    "__version__",
    "CallableVerifier",
    "ChoiceVerifier",
    "DEFAULT_MODEL",
    "DatasetFormat",
    "DistributionPatchConfig",
    "DistributionPatchTrainer",
    "DiversityReward",
    "ExactMatchVerifier",
    "FormatSpec",
    "GenerationBackend",
    "GenerationSettings",
    "LLMJudge",
    "MathVerifier",
    "PATCH_COLUMNS",
    "PatchResult",
    "PatchReward",
    "PatchStatistics",
    "QAScorer",
    "QAStyleAlignmentReward",
    "RegexVerifier",
    "Rewriter",
    "RewriterConfig",
    "RewriterGRPOConfig",
    "RewriterTrainer",
    "StaticBackend",
    "TaskConsistencyReward",
    "TransformersBackend",
    "VLLMBackend",
    "VerificationResult",
    "Verifier",
    "detect_format",
    "get_verifier",
    "load_model_and_tokenizer",
    "push_patched_dataset",
    "push_rewriter",
    "resolve_model_path",
]

if TYPE_CHECKING:
    from .formats import DatasetFormat, FormatSpec, detect_format
    from .generation import GenerationBackend, GenerationSettings, StaticBackend, TransformersBackend, VLLMBackend
    from .hub import push_patched_dataset, push_rewriter
    from .judge import LLMJudge
    from .models import DEFAULT_MODEL, load_model_and_tokenizer, resolve_model_path
    from .patch_statistics import PatchStatistics
    from .rewards import DiversityReward, PatchReward, QAStyleAlignmentReward, TaskConsistencyReward
    from .rewriter import PATCH_COLUMNS, PatchResult, Rewriter, RewriterConfig
    from .scoring import QAScorer
    from .trainers import DistributionPatchConfig, DistributionPatchTrainer, RewriterGRPOConfig, RewriterTrainer
    from .verifiers import (
        CallableVerifier,
        ChoiceVerifier,
        ExactMatchVerifier,
        MathVerifier,
        RegexVerifier,
        VerificationResult,
        Verifier,
        get_verifier,
    )


__getattr__, __dir__ = lazy_exports(__name__, _NAME_TO_MODULE, _DEPRECATED)
