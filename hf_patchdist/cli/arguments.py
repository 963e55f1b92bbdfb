"""The options of `hf-patchdist sft` and `hf-patchdist train-rewriter` that are not in TRL's configs.

A training command parses, as TRL's `trl sft` and `trl grpo` scripts do, one `TrlParser` over several
dataclasses: the script arguments below, the training config (`DistributionPatchConfig` or `RewriterGRPOConfig`)
and the model options (TRL's `ModelConfig`, or `RewriterModelConfig` for the rewriter). No two of them may share a
field name (the parser would refuse the second `--name`), which is why the rewriter's command has its own model
dataclass. This module imports neither torch nor TRL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models import DEFAULT_MODEL


@dataclass
class PatchScriptArguments:
    """Options of both training commands that belong to the script, not to the trainer.

    Parameters:
        dataset_name (`str` or `None`, *optional*):
            The training set: a Hub id, a local JSONL/JSON/Parquet/CSV file or a folder written by `save_to_disk`.
            `None` loads the small built-in set of arithmetic word problems. Old spelling: `--dataset`.
        dataset_config (`str` or `None`, *optional*):
            Configuration of a Hub data set (e.g. `main` for `openai/gsm8k`).
        dataset_train_split (`str` or `None`, *optional*):
            Split to train on, with slicing (e.g. `train[:800]`); `None` means `train`. Old spelling: `--split`.
        limit (`int` or `None`, *optional*):
            Use only the first N rows of the split.
        overwrite (`bool`, *optional*, defaults to `False`):
            Accept a non-empty `output_dir`: `sft` deletes it first; `train-rewriter` writes into it.
        resume (`bool`, *optional*, defaults to `False`):
            Continue from the last checkpoint in `output_dir` (`trainer.train(resume_from_checkpoint=True)`); a
            non-empty `output_dir` is then expected. TRL's `resume_from_checkpoint` (a checkpoint folder) works
            too and wins.
    """

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Training set: Hub id, local JSONL/JSON/Parquet/CSV file or saved data set; default: the built-in arithmetic set."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub data set configuration name (e.g. 'main' for openai/gsm8k)."})
    dataset_train_split: str | None = field(
        default=None, metadata={"help": "Split to train on, with slicing (e.g. 'train[:800]'); None: 'train'."}
    )
    limit: int | None = field(default=None, metadata={"help": "Use only the first N rows."})
    overwrite: bool = field(default=False, metadata={"help": "Accept a non-empty output_dir (sft deletes it first)."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in output_dir."})


@dataclass
class SFTScriptArguments(PatchScriptArguments):
    """Options of `hf-patchdist sft`: the data (see `PatchScriptArguments`) and the rewriter that patches it.

    The patch options that a Python user passes in the config are `DistributionPatchConfig` fields here too:
    `patch_num_candidates`, `patch_batch_size`, `patch_question_column`, `patch_answer_column`, `patch_cache_dir`
    and `patch_use_cache`. The model being trained, its dtype and LoRA are TRL's `ModelConfig` fields
    (`model_name_or_path`, `dtype`, `use_peft`, `lora_r`, ...).

    Parameters:
        rewriter (`str` or `None`, *optional*):
            A trained rewriter: a local folder or Hub id holding `rewriter_config.json`. `None`: prompted rewriting
            on `model_name_or_path` (the model being trained, before any step: pi_0).
        rewriter_dtype (`str` or `None`, *optional*):
            dtype the rewriter loads its model in: `auto` (bfloat16 where the hardware computes it, else float32),
            `float32`, `bfloat16` or `float16`. `None`: `dtype` (the trained model's) when given, else `auto`.
        rewriter_max_new_tokens (`int` or `None`, *optional*):
            Token limit per rewrite; `None` keeps the rewriter's own setting. Old spelling: `--max-new-tokens`.
    """

    rewriter: str | None = field(
        default=None,
        metadata={"help": "Trained rewriter (folder or Hub id); None: prompted rewriting on model_name_or_path."},
    )
    rewriter_dtype: str | None = field(
        default=None,
        metadata={
            "help": "dtype of the rewriter's model: auto (bfloat16 where supported), float32, bfloat16, float16. "
            "None: dtype when given, else auto."
        },
    )
    rewriter_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Token limit per rewrite; None: the rewriter's own setting."}
    )


@dataclass
class TrainRewriterScriptArguments(PatchScriptArguments):
    """Options of `hf-patchdist train-rewriter`: the data (see `PatchScriptArguments`) and the group layout.

    The question/answer columns, the gate (`verifier`), the reward weights, the judge and the LoRA adapter
    (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_target_modules`) are `RewriterGRPOConfig` fields.

    Parameters:
        prompts_per_step (`int` or `None`, *optional*):
            Prompts (groups of `num_generations` candidates) per device and step: sets
            `per_device_train_batch_size = prompts_per_step * num_generations`. When neither is given, one prompt
            per step. Give one of the two, or both when they agree.
    """

    prompts_per_step: int | None = field(
        default=None,
        metadata={
            "help": "Prompts (groups) per device and step: per_device_train_batch_size = prompts_per_step * "
            "num_generations. Default 1 when per_device_train_batch_size is not given either."
        },
    )


@dataclass
class RewriterModelConfig:
    """TRL's `ModelConfig` for `hf-patchdist train-rewriter`: its model options, without its LoRA fields.

    `RewriterGRPOConfig` owns `lora_r`, `lora_alpha`, `lora_dropout` and `lora_target_modules` (Python users set
    them there, and `RewriterTrainer` builds its `LoraConfig` from them), and `ModelConfig` defines the same four
    names: one parser over both would raise "conflicting option strings". The rewriter is always a LoRA adapter, so
    `use_peft`, `lora_task_type` and the quantization options have no place either.

    Parameters:
        model_name_or_path (`str`, *optional*, defaults to `"smollm2-135m-instruct"`):
            Backbone of the rewriter: the embedded alias, a local folder or a Hub id. Old spelling: `--model`.
        model_revision (`str`, *optional*, defaults to `"main"`):
            Branch, tag or commit of a Hub model.
        dtype (`str` or `None`, *optional*):
            dtype to load the backbone in: `auto` (bfloat16 where the hardware computes it, else float32),
            `bfloat16`, `float16` or `float32`. `None` means `auto`.
        attn_implementation (`str` or `None`, *optional*):
            Attention implementation (e.g. `sdpa`, `flash_attention_2`).
        use_rslora (`bool`, *optional*, defaults to `False`):
            Rank-stabilised LoRA (scaling `lora_alpha / sqrt(r)`).
        use_dora (`bool`, *optional*, defaults to `False`):
            Weight-decomposed LoRA (DoRA).
    """

    model_name_or_path: str = field(default=DEFAULT_MODEL, metadata={"help": "Backbone: embedded alias, local folder or Hub id."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of a Hub model."})
    dtype: str | None = field(
        default=None,
        metadata={
            "help": "dtype to load the backbone in; None and 'auto': bfloat16 where the hardware computes it, else float32.",
            "choices": ["auto", "bfloat16", "float16", "float32"],
        },
    )
    attn_implementation: str | None = field(default=None, metadata={"help": "Attention implementation (e.g. sdpa)."})
    use_rslora: bool = field(default=False, metadata={"help": "Rank-stabilised LoRA (scaling lora_alpha / sqrt(r))."})
    use_dora: bool = field(default=False, metadata={"help": "Weight-decomposed LoRA (DoRA)."})
