"""Configuration of :class:`~hf_patchdist.trainers.DistributionPatchTrainer`."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

from ..models import apply_hardware_precision


@dataclass
class DistributionPatchConfig(SFTConfig):
    r"""
    Configuration class for the [`DistributionPatchTrainer`]: every field of TRL's `SFTConfig`, plus the options
    of the patching step that runs once, before training, on the training set (Stage II of "Patch the
    Distribution Mismatch", arXiv 2602.11220: Generate-Verify-Fallback, then ordinary SFT).

    A plain `SFTConfig` (or `TrainingArguments`) is accepted by the trainer too; the patch options then take the
    defaults below. The options override what a `Rewriter` passed to the trainer says, so that one config decides
    a run.

    Without a GPU, `use_cpu` is set and `bf16` left unset becomes True only on a CPU that computes bfloat16
    natively (AVX-512 BF16 or AMX): elsewhere TRL's bf16 default is emulated and several times slower than float32.

    Parameters:
        > Parameters that control the patching of the training set

        patch_num_candidates (`int` or `None`, *optional*):
            Candidates generated per training example; the feasible candidate with the lowest NLL under pi_0 is kept.
            `None` keeps the rewriter's own setting (1, greedy, for the prompted rewriter; what a saved rewriter's
            `rewriter_config.json` says otherwise). Above 1, sampling is switched on.
        patch_batch_size (`int` or `None`, *optional*):
            Examples per `datasets.map` batch and per generation/scoring batch while patching. `None` keeps the
            rewriter's own batch size (16 by default). Changing it changes the cache key: batched generation pads
            prompts, and padding can change greedy outputs in low precision.
        patch_question_column (`str` or `None`, *optional*):
            For a data set in plain columns (not a TRL format), the column holding the question. `None` means
            `"question"` when the data set has no `messages` or `prompt`/`completion` columns.
        patch_answer_column (`str` or `None`, *optional*):
            For a data set in plain columns, the column holding the expert answer. `None` means `"answer"` when the
            data set has no `messages` or `prompt`/`completion` columns.
        patch_cache_dir (`str` or `None`, *optional*):
            Folder of the on-disk cache of patched training sets. `None` means `<datasets cache>/hf_patchdist`
            (`datasets.config.HF_DATASETS_CACHE`, which follows `HF_DATASETS_CACHE`/`HF_HOME`).
        patch_use_cache (`bool`, *optional*, defaults to `True`):
            Reuse a patched training set from the cache when the data set, the rewriter and the patch options are
            the same, instead of generating again; and store the result of a new patch there. `False` patches on
            every construction and writes nothing to the cache.
    """

    patch_num_candidates: int | None = field(
        default=None,
        metadata={
            "help": "Candidates generated per training example (the feasible one with the lowest pi_0 NLL is kept). "
            "None keeps the rewriter's own setting."
        },
    )
    patch_batch_size: int | None = field(
        default=None,
        metadata={"help": "Examples per rewriting batch. None keeps the rewriter's own batch size (16)."},
    )
    patch_question_column: str | None = field(
        default=None,
        metadata={"help": "Plain column holding the question (default 'question' for plain data sets)."},
    )
    patch_answer_column: str | None = field(
        default=None,
        metadata={"help": "Plain column holding the expert answer (default 'answer' for plain data sets)."},
    )
    patch_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Folder of the patched-data-set cache. None: <HF_DATASETS_CACHE>/hf_patchdist."},
    )
    patch_use_cache: bool = field(
        default=True,
        metadata={"help": "Reuse (and store) the patched training set in the on-disk cache."},
    )

    def __post_init__(self) -> None:
        apply_hardware_precision(self)
        super().__post_init__()
        # Fail when the config is built, not minutes later after the model has loaded.
        for name in ("patch_num_candidates", "patch_batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer or None, got {value!r}.")
