"""`hf-patchdist train-rewriter`: train a rewriter (a LoRA adapter) with GRPO and save it (Stage I).

Parsed as TRL's `trl grpo` script parses: one `TrlParser` over `TrainRewriterScriptArguments`, `RewriterGRPOConfig`
(every `GRPOConfig` field, the reward and gate options and the LoRA fields) and `RewriterModelConfig` (TRL's
`ModelConfig` without the LoRA fields the config owns), built only when the command runs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .arguments import RewriterModelConfig, TrainRewriterScriptArguments
from .common import check_output_dir, load_script_dataset


HELP = "Train a rewriter (LoRA) with GRPO and save it (Stage I)"
DESCRIPTION = """\
Stage I: train the rewriting agent with GRPO (RewriterTrainer) and save what Rewriter.from_pretrained loads:
the LoRA adapter and rewriter_config.json, in output_dir.

Every field of RewriterGRPOConfig (TRL's GRPOConfig plus the reward, gate and LoRA options), of
RewriterModelConfig and of TrainRewriterScriptArguments is an option, on the command line (--field_name VALUE)
or in a YAML file (--config FILE.yaml); the command line wins over the file. The LoRA options (lora_r,
lora_alpha, lora_dropout, lora_target_modules) are RewriterGRPOConfig's; --verifier takes a preset name
('math', ...) or a JSON object. Defaults of this command, where they differ from RewriterGRPOConfig's:
save_steps 10, save_total_limit 2, gradient_checkpointing false, and per_device_train_batch_size =
prompts_per_step (1) * num_generations. Without a GPU, use_cpu is set and bf16 is on only where the CPU computes
bfloat16 natively.

  hf-patchdist train-rewriter --config examples/train_rewriter.yaml --output_dir out/rewriter
"""

# The command's own defaults: a YAML value or a command-line value wins over each.
DEFAULTS: dict[str, Any] = {
    "save_steps": 10,
    "save_total_limit": 2,
    "gradient_checkpointing": False,
    "report_to": "none",
    "output_dir": None,  # required
    "per_device_train_batch_size": None,  # unset: prompts_per_step * num_generations
}


def _resolve(namespace: argparse.Namespace, parser: Any) -> None:
    from .parser import require_output_dir

    require_output_dir(namespace, parser)
    group = namespace.num_generations
    prompts = namespace.prompts_per_step
    batch = namespace.per_device_train_batch_size
    if batch is None:
        namespace.per_device_train_batch_size = (prompts or 1) * group if group else 4
    elif prompts is not None and group and batch != prompts * group:
        parser.error(
            f"per_device_train_batch_size {batch} != prompts_per_step {prompts} * num_generations {group}: give one "
            "of per_device_train_batch_size and prompts_per_step"
        )


def make_parser(prog: str = "hf-patchdist train-rewriter"):
    """The `TrlParser` of the command (imports TRL and the GRPO config)."""
    from ..trainers.rewriter_grpo_config import RewriterGRPOConfig
    from .parser import PatchParser

    return PatchParser(
        (TrainRewriterScriptArguments, RewriterGRPOConfig, RewriterModelConfig),
        command="train-rewriter",
        prog=prog,
        description=DESCRIPTION,
        defaults=DEFAULTS,
        resolve=_resolve,
    )


def parse_train_rewriter_args(argv: Sequence[str]) -> tuple[Any, Any, Any]:
    """``(script_args, training_args, model_args)`` from the arguments after ``train-rewriter``."""
    return make_parser().parse(argv)


def build_rewriter_trainer(
    script_args: TrainRewriterScriptArguments, training_args: Any, model_args: RewriterModelConfig, train_dataset: Any = None
):
    """The `RewriterTrainer` of a parsed command line (the backbone is loaded here)."""
    from ..trainers.rewriter_trainer import RewriterTrainer

    if train_dataset is None:
        train_dataset = load_script_dataset(script_args)
    # The model options reach RewriterTrainer's loading through model_init_kwargs (the config's own win).
    given = {"dtype": model_args.dtype, "attn_implementation": model_args.attn_implementation}
    if model_args.model_revision != "main":
        given["revision"] = model_args.model_revision
    init_kwargs = {key: value for key, value in given.items() if value is not None}
    init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = init_kwargs or None
    peft_config = None  # RewriterTrainer builds the LoraConfig from the config's lora_* fields ...
    if model_args.use_rslora or model_args.use_dora:  # ... unless a ModelConfig LoRA option asks for more
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=training_args.lora_r,
            lora_alpha=training_args.lora_alpha,
            lora_dropout=training_args.lora_dropout,
            target_modules=training_args.lora_target_modules,
            use_rslora=model_args.use_rslora,
            use_dora=model_args.use_dora,
            task_type="CAUSAL_LM",
        )
    return RewriterTrainer(model=model_args.model_name_or_path, args=training_args, train_dataset=train_dataset, peft_config=peft_config)


def run_train_rewriter(argv: Sequence[str]) -> int:
    """Train, save the rewriter in output_dir (and push it with `push_to_hub`), print the training summary."""
    script_args, training_args, model_args = parse_train_rewriter_args(argv)
    output = Path(training_args.output_dir)
    resume = training_args.resume_from_checkpoint or (True if script_args.resume else None)
    check_output_dir(output, overwrite=script_args.overwrite, resume=bool(resume), wipe=False)
    trainer = build_rewriter_trainer(script_args, training_args, model_args)
    trainer.train(resume_from_checkpoint=resume)
    print(json.dumps(trainer.training_summary(), indent=2))
    print(f"Saved the rewriter to {output} (load it with Rewriter.from_pretrained({str(output)!r}))")
    return 0


def add_train_rewriter_command(sub: argparse._SubParsersAction) -> None:
    """Register `train-rewriter` on the top-level parser; its options are parsed when it runs."""
    sub.add_parser("train-rewriter", help=HELP, description=HELP, add_help=False)
