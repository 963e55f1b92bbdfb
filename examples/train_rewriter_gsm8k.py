"""Train a GSM8K rewriter with GRPO on a CPU (Stage I), then save it as a small bf16 LoRA.

    python examples/train_rewriter_gsm8k.py --output runs/gsm8k-rewriter --max-steps 40
    python examples/train_rewriter_gsm8k.py --output runs/gsm8k-rewriter --max-steps 40 --resume   # continue
    python examples/train_rewriter_gsm8k.py --output runs/gsm8k-rewriter-v2 --init-adapter examples/rewriters/gsm8k-smollm2-135m

Prompts come from GSM8K ``train[1000:]`` (the project's rewriter-training rows; SFT uses
``train[:800]`` and rewriter evaluation ``train[800:1000]``). The defaults are CPU-fit, not the
paper's: a higher learning rate and a smaller LoRA so that 40 steps move the adapter, K = 4
candidates and two prompts per step, sampling at temperature 0.6 (the 135M model's samples at
temperature 1 are mostly unusable). Every logged step is appended to ``<output>/log.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from datasets import load_dataset
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from hf_patchdist import RewriterTrainer, RewriterGRPOConfig


class JsonlLogCallback(TrainerCallback):
    """Append every log entry to a JSONL file, so a long background run can be followed and plotted."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            with open(self.path, "a") as handle:
                handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def save_adapter_as_bf16(folder: Path) -> None:
    """peft keeps LoRA weights in float32; bf16 halves the committed file and loads the same way."""
    path = folder / "adapter_model.safetensors"
    tensors = {name: tensor.to(torch.bfloat16) for name, tensor in load_file(path).items()}
    save_file(tensors, path, metadata={"format": "pt"})


def load_adapter_weights(model: torch.nn.Module, folder: Path) -> None:
    """Copy a saved LoRA's weights into the trainer's fresh adapter; every tensor must find its place."""
    from peft import set_peft_model_state_dict

    weights = {name: tensor.float() for name, tensor in load_file(folder / "adapter_model.safetensors").items()}
    result = set_peft_model_state_dict(model, weights)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"{folder} does not fit the trainer's adapter (r, alpha, target modules): {unexpected[:3]}")
    print(f"Started from the adapter in {folder} ({len(weights)} tensors)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/gsm8k/train.jsonl", help="GSM8K train JSONL (or a Hub id)")
    parser.add_argument("--split", default="train[1000:]")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--output", default="runs/gsm8k-rewriter")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--beta", type=float, default=0.001)
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--max-completion-length", type=int, default=160)
    parser.add_argument("--save-steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="Continue from the last checkpoint in --output")
    parser.add_argument("--export", default=None, help="Also copy the final rewriter (bf16 adapter) to this folder")
    parser.add_argument(
        "--init-adapter",
        default=None,
        help="Start from this rewriter's LoRA weights (same r and alpha) instead of a fresh adapter, e.g. to "
        "retrain a committed rewriter after the gate changed",
    )
    args = parser.parse_args()

    if Path(args.data).is_file():
        dataset = load_dataset("json", data_files=args.data, split=args.split)
    else:
        dataset = load_dataset(args.data, "main", split=args.split)
    dataset = dataset.shuffle(seed=args.seed)

    output = Path(args.output)
    config = RewriterGRPOConfig(
        str(output),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.prompts_per_step * args.num_generations,
        num_generations=args.num_generations,
        learning_rate=args.learning_rate,
        lr_scheduler_type="constant",
        beta=args.beta,
        temperature=args.temperature,
        max_completion_length=args.max_completion_length,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        # TRL samples with the model in train mode: LoRA dropout would add noise to every rollout.
        lora_dropout=0.0,
        gradient_checkpointing=False,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=2,
        logging_steps=1,
        report_to="none",
        seed=args.seed,
    )
    trainer = RewriterTrainer(model=args.model, args=config, train_dataset=dataset, callbacks=[JsonlLogCallback(output / "log.jsonl")])
    if args.init_adapter and not args.resume:
        load_adapter_weights(trainer.model, Path(args.init_adapter))
    trainer.train(resume_from_checkpoint=args.resume or None)
    save_adapter_as_bf16(output)
    print(json.dumps(trainer.training_summary(), indent=2))
    if args.export:
        export = Path(args.export)
        export.mkdir(parents=True, exist_ok=True)
        for name in ("adapter_model.safetensors", "adapter_config.json", "rewriter_config.json"):
            shutil.copy2(output / name, export / name)
        print(f"Exported the rewriter to {export}")


if __name__ == "__main__":
    main()
