"""hf-patchdist: rewrite SFT targets into the model's own words so fine-tuning forgets less.

Implements "Patch the Distribution Mismatch: RL Rewriting Agent for Stable Off-Policy SFT"
(arXiv 2602.11220) on the Hugging Face stack.
"""

__version__ = "0.1.0"

from .formats import DatasetFormat, FormatSpec, detect_format
from .generation import GenerationBackend, GenerationSettings, StaticBackend, TransformersBackend, VLLMBackend
from .models import DEFAULT_MODEL, load_model_and_tokenizer, resolve_model_path
from .rewriter import PATCH_COLUMNS, Rewriter, RewriterConfig
from .hub import push_patched_dataset
from .judge import LLMJudge
from .rewards import DiversityReward, PatchReward, QAStyleAlignmentReward, TaskConsistencyReward
from .scoring import QAScorer
from .statistics import PatchStatistics
from .trainers import DistributionPatchTrainer, PatchSFTConfig, RewriterTrainer, RewriterTrainingConfig
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
