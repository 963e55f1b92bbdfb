"""`hf-patchdist sft`: patch a training set (cached) and fine-tune on it with `DistributionPatchTrainer`.

Parsed as TRL's `trl sft` script parses: one `TrlParser` over `SFTScriptArguments`, `DistributionPatchConfig`
(every `SFTConfig` field and the `patch_*` options) and TRL's `ModelConfig`, built only when the command runs, so
that `hf-patchdist --help` imports neither torch nor TRL, and `sft` does not import the GRPO stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..models import DEFAULT_MODEL
from .arguments import SFTScriptArguments
from .common import check_output_dir, load_script_dataset, make_rewriter


HELP = "Patch a training set (cached) and fine-tune on it with DistributionPatchTrainer"
DESCRIPTION = """\
Stage II: patch the training targets with Generate-Verify-Fallback (cached on disk), then SFT with TRL. Plain
question/answer sets are trained as conversational prompt-completion rows.

Every field of DistributionPatchConfig (TRL's SFTConfig plus the patch_* options), of TRL's ModelConfig and of
SFTScriptArguments is an option, on the command line (--field_name VALUE) or in a YAML file (--config FILE.yaml);
the command line wins over the file. Defaults of this command, where they differ from TRL's: num_train_epochs 1,
save_strategy 'no' (the final model is saved), model_name_or_path smollm2-135m-instruct, lora_target_modules
all-linear (with --use_peft). 'dtype' is the trained model's dtype (float32 when unset, as in TRL; 'auto' is
bfloat16 where the hardware computes it, else float32) and the rewriter's unless --rewriter_dtype is given.
Without a GPU, use_cpu is set and bf16 is on only where the CPU computes bfloat16 natively.

  hf-patchdist sft --config examples/sft.yaml --output_dir out/sft --max_steps 10
"""

# The command's own defaults: a YAML value or a command-line value wins over each.
DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 1.0,
    "save_strategy": "no",  # the final model is saved at the end; checkpoints are opt-in
    "report_to": "none",
    "output_dir": None,  # required: TRL's default would be ./trainer_output
    "model_name_or_path": DEFAULT_MODEL,
    "dtype": None,  # unset: float32 for the trained model (TRL's default), 'auto' for the rewriter
    "lora_target_modules": ["all-linear"],
}


def make_parser(prog: str = "hf-patchdist sft"):
    """The `TrlParser` of the command (imports TRL and the SFT config)."""
    from trl import ModelConfig

    from ..trainers.distribution_patch_config import DistributionPatchConfig
    from .parser import PatchParser, require_output_dir

    return PatchParser(
        (SFTScriptArguments, DistributionPatchConfig, ModelConfig),
        command="sft",
        prog=prog,
        description=DESCRIPTION,
        defaults=DEFAULTS,
        resolve=require_output_dir,
    )


def parse_sft_args(argv: Sequence[str]) -> tuple[Any, Any, Any]:
    """``(script_args, training_args, model_args)`` from the arguments after ``sft`` (YAML, old flags included)."""
    return make_parser().parse(argv)


def _model_dtype(dtype: str | None) -> str:
    """The trained model's dtype for TRL: unset is float32 (TRL's default); 'auto' is this package's 'auto'."""
    if dtype is None:
        return "float32"
    if dtype == "auto":
        from ..models import default_dtype

        return str(default_dtype()).removeprefix("torch.")
    return dtype


def build_sft_trainer(script_args: SFTScriptArguments, training_args: Any, model_args: Any, train_dataset: Any = None):
    """The `DistributionPatchTrainer` of a parsed command line (patching the training set happens here)."""
    from trl import get_peft_config, get_quantization_config

    from ..trainers.distribution_patch_trainer import DistributionPatchTrainer

    if train_dataset is None:
        train_dataset = load_script_dataset(script_args)
    # As TRL's sft script: the model options reach from_pretrained through model_init_kwargs (the config's own win).
    model_init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=_model_dtype(model_args.dtype),
    )
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs
    model = model_args.model_name_or_path
    rewriter = make_rewriter(
        script_args.rewriter,
        model,
        max_new_tokens=script_args.rewriter_max_new_tokens,
        dtype=script_args.rewriter_dtype or model_args.dtype or "auto",
        trust_remote_code=training_args.trust_remote_code,  # also lets --rewriter's config name a callable verifier
    )
    print(
        f"Patching {len(train_dataset)} rows with {script_args.rewriter or 'prompted rewriting on ' + model}, then SFT of {model} ...",
        file=sys.stderr,
    )
    # The rewriter is built inline: no reference outlives the patching, so its model copy is freed before training.
    return DistributionPatchTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        rewriter=rewriter,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )


def run_sft(argv: Sequence[str]) -> int:
    """Patch the training set (cached), fine-tune, save the model, its card and `patch_statistics.json`."""
    script_args, training_args, model_args = parse_sft_args(argv)
    output = Path(training_args.output_dir)
    resume = training_args.resume_from_checkpoint or (True if script_args.resume else None)
    check_output_dir(output, overwrite=script_args.overwrite, resume=bool(resume), wipe=True)
    trainer = build_sft_trainer(script_args, training_args, model_args)
    print(trainer.patch_statistics.summary())
    trainer.train(resume_from_checkpoint=resume)
    output.mkdir(parents=True, exist_ok=True)
    # Written before save_model, which pushes the folder when push_to_hub is set.
    (output / "patch_statistics.json").write_text(json.dumps(trainer.patch_statistics.to_dict(), indent=2) + "\n")
    trainer.save_model(str(output))
    trainer.create_model_card(model_name=output.name)
    print(f"Saved the fine-tuned model and its card to {output}")
    return 0


def add_sft_command(sub: argparse._SubParsersAction) -> None:
    """Register `sft` on the top-level parser; its options are parsed by `make_parser` when it runs."""
    sub.add_parser("sft", help=HELP, description=HELP, add_help=False)
