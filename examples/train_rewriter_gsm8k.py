"""Train a GSM8K rewriter with GRPO on a CPU (Stage I), then save it as a small bf16 LoRA.

    python examples/train_rewriter_gsm8k.py --output runs/gsm8k-rewriter --max-steps 40
    python examples/train_rewriter_gsm8k.py --output runs/gsm8k-rewriter --max-steps 40 --resume   # continue
    python examples/train_rewriter_gsm8k.py --output runs/gsm8k-rewriter-rft --rft-rows 128 --rft-candidates 4

The recipe: a fresh LoRA adapter, the full GRPO gate (``GRPO_GATE``: strict, copies of the expert answer
and skipped steps fail), K = 8 candidates per prompt and two prompts per step (each process scores
``per_device_train_batch_size * steps_per_generation`` = 16 completions, whole groups of 8; one group per
forward pass, two accumulated per optimizer step, which halves the memory of a step). With
``--rft-rows N`` the adapter is first warm-started by rejection-sampling fine-tuning (RFT): the prompted
rewriter (the backbone without adapter, ``--rft-candidates`` sampled candidates per row at temperature 0.6,
top_p 0.95) patches N rows under the same GRPO gate, and the LoRA is fine-tuned with TRL's ``SFTTrainer``
on (rewriting prompt -> lowest-NLL accepted rewrite) of the rows it rewrote (completion-only loss). The
fine-tuned ``PeftModel`` is then handed to ``RewriterTrainer``, which keeps the KL reference at pi_0 (the
adapter off), not at the warm start. The RFT data (``rft/rft_data.jsonl``), every candidate with its
verdict (``rft/rft_candidates.jsonl``) and their statistics (``rft/rft_stats.json``) stay in the output
folder.

Prompts come from GSM8K ``train[1000:]`` (the project's rewriter-training rows; SFT uses
``train[:800]`` and rewriter evaluation ``train[800:1000]``), shuffled with ``--seed``: GRPO draws its
prompts from all but the last ``RFT_RESERVE`` shuffled rows, RFT from those last rows, so the two never
share a row and GRPO sees the same prompts with and without the warm start. The defaults are CPU-fit,
not the paper's: a higher learning rate and a smaller LoRA so that a few dozen steps move the adapter,
sampling at temperature 0.6 (the 135M model's samples at temperature 1 are mostly unusable). Every
logged step is appended to ``<output>/log.jsonl``; every 10 steps the trainer prints a one-line summary
of the rollouts (feasible fraction, zero-spread groups, length, rejections by reason, copies).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import torch
from datasets import load_dataset
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from hf_patchdist import RewriterTrainer, RewriterGRPOConfig
from hf_patchdist.formats import QAExample
from hf_patchdist.models import base_model_record, load_model_and_tokenizer
from hf_patchdist.rewriter import Rewriter, RewriterConfig, build_prompt_messages
from hf_patchdist.trainers.rewriter_trainer import backbone_init_kwargs

RFT_RESERVE = 1024
"""The last rows of the shuffled split are RFT's; GRPO never prompts with them."""


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


def lora_config(args: argparse.Namespace):
    from peft import LoraConfig

    # TRL samples with the model in train mode: LoRA dropout would add noise to every rollout.
    return LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def rejection_sampling_data(model, tokenizer, rows, config: RewriterGRPOConfig, args: argparse.Namespace, folder: Path, backend=None) -> list[dict]:
    """Patch ``rows`` with the prompted rewriter (best of ``--rft-candidates`` samples under the GRPO gate).

    Returns the SFT rows (conversational prompt-completion) of the rows it rewrote; writes every row's
    candidates and verdicts, the accepted set and their statistics under ``folder``.
    """
    rewriter_config = RewriterConfig(
        prompt_template=config.prompt_template,
        system_prompt=config.system_prompt,
        keep_rejected=True,
        generation={"max_new_tokens": config.max_completion_length},
        # Stated here, not left to RewriterConfig's defaults (the same values today): the RFT data depend on them.
        sampling={"do_sample": True, "temperature": 0.6, "top_p": 0.95},
    )
    # The GRPO gate (strict, no copies, the expert's steps): the warm start should teach what GRPO rewards.
    rewriter = Rewriter(
        model, tokenizer, config=rewriter_config, verifier=config.verifier, num_candidates=args.rft_candidates, batch_size=16, backend=backend
    )
    start = time.perf_counter()
    patched = rewriter.rewrite(rows)
    seconds = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    sft_rows, accepted = [], []
    with open(folder / "rft_candidates.jsonl", "w") as handle:
        for original, row in zip(rows, patched):
            handle.write(json.dumps({
                "question": original["question"], "expert_answer": original["answer"], "patch_source": row["patch_source"],
                "patch_reason": row["patch_reason"], "kept": row["answer"] if row["patch_source"] == "rewrite" else None,
                "nll_expert": row["patch_nll_original"], "nll_kept": row["patch_nll_kept"], "num_feasible": row.get("patch_num_feasible"),
                "rejected": row["patch_rejected"],
            }) + "\n")
            if row["patch_source"] != "rewrite":
                continue
            example = QAExample(original["question"], original["answer"], [])
            sft_rows.append({
                "prompt": build_prompt_messages(rewriter.config, example),
                "completion": [{"role": "assistant", "content": row["answer"]}],
            })
            accepted.append({"question": original["question"], "expert_answer": original["answer"], "rewrite": row["answer"],
                             "nll_expert": row["patch_nll_original"], "nll_rewrite": row["patch_nll_kept"]})
    with open(folder / "rft_data.jsonl", "w") as handle:
        for row in accepted:
            handle.write(json.dumps(row) + "\n")
    rejected = Counter(c["reason"] for row in patched for c in row["patch_rejected"])
    candidates = len(rows) * args.rft_candidates
    stats = {
        "rows": len(rows),
        "candidates_per_row": args.rft_candidates,
        "generation": {k: v for k, v in vars(rewriter.generation_settings).items() if k != "batch_size"},
        "gate": config.verifier,
        "rewritten_rows": len(accepted),
        "row_acceptance": len(accepted) / len(rows) if len(rows) else 0.0,
        "feasible_candidate_fraction": (candidates - sum(rejected.values())) / candidates if candidates else 0.0,
        "rows_by_source": dict(Counter(patched["patch_source"])),
        "rejected_candidates_by_reason": dict(rejected.most_common()),
        "mean_nll_expert_of_rewritten": sum(r["nll_expert"] for r in accepted) / len(accepted) if accepted else None,
        "mean_nll_rewrite": sum(r["nll_rewrite"] for r in accepted) / len(accepted) if accepted else None,
        "patch_seconds": round(seconds, 1),
    }
    (folder / "rft_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"RFT data: {len(accepted)} of {len(rows)} rows rewritten in {seconds:.0f} s ({folder / 'rft_data.jsonl'})")
    return sft_rows


def warm_start_by_rft(config: RewriterGRPOConfig, args: argparse.Namespace, rows, folder: Path, backend=None):
    """The backbone with a LoRA fine-tuned on the prompted rewriter's accepted rewrites of ``rows`` (a ``PeftModel``).

    ``backend`` replaces the Rewriter's generation backend (tests pass a ``StaticBackend``).
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = load_model_and_tokenizer(args.model, **backbone_init_kwargs(config))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    sft_rows = rejection_sampling_data(model, tokenizer, rows, config, args, folder, backend)
    if not sft_rows:
        raise SystemExit("RFT: the prompted rewriter rewrote no row; nothing to warm-start from.")
    sft_args = SFTConfig(
        str(folder / "sft"),
        num_train_epochs=args.rft_epochs,
        per_device_train_batch_size=8,
        learning_rate=args.rft_learning_rate,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        gradient_checkpointing=False,
        completion_only_loss=True,
        bf16=config.bf16,
        use_cpu=config.use_cpu,
        seed=args.seed,
    )
    start = time.perf_counter()
    trainer = SFTTrainer(model=model, args=sft_args, train_dataset=Dataset.from_list(sft_rows), processing_class=tokenizer, peft_config=lora_config(args))
    trainer.train()
    seconds = time.perf_counter() - start
    stats = json.loads((folder / "rft_stats.json").read_text())
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    stats["sft"] = {"examples": len(sft_rows), "epochs": args.rft_epochs, "learning_rate": args.rft_learning_rate, "steps": trainer.state.global_step,
                    "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None, "seconds": round(seconds, 1)}
    (folder / "rft_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    peft_model = trainer.model
    peft_model.train()
    return peft_model, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/gsm8k/train.jsonl", help="GSM8K train JSONL (or a Hub id)")
    parser.add_argument("--split", default="train[1000:]")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--output", default="runs/gsm8k-rewriter")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--num-generations", type=int, default=8, help="K: candidates per prompt")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--beta", type=float, default=0.001)
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--max-completion-length", type=int, default=160)
    parser.add_argument("--save-steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="Continue from the last checkpoint in --output")
    parser.add_argument("--rft-rows", type=int, default=0, help="Warm-start the LoRA by RFT on this many rows (0: fresh adapter)")
    parser.add_argument("--rft-candidates", type=int, default=4, help="Sampled candidates per RFT row")
    parser.add_argument("--rft-epochs", type=float, default=3.0)
    parser.add_argument("--rft-learning-rate", type=float, default=2e-4)
    parser.add_argument("--log-completions", action="store_true", help="TRL's completion tables (with gate reasons) in <output>/completions")
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
    if args.rft_rows > RFT_RESERVE or len(dataset) <= RFT_RESERVE:
        raise SystemExit(f"--rft-rows must be at most {RFT_RESERVE}, and the split must hold more than {RFT_RESERVE} rows")
    grpo_rows = dataset.select(range(len(dataset) - RFT_RESERVE))
    rft_rows = dataset.select(range(len(dataset) - RFT_RESERVE, len(dataset) - RFT_RESERVE + args.rft_rows))

    output = Path(args.output)
    config = RewriterGRPOConfig(
        str(output),
        max_steps=args.max_steps,
        # One group per forward pass, the step's groups accumulated: the logits of a 16-sequence batch (~700 tokens, a
        # 49k vocabulary) took a GRPO step past 15 GB here; the update is the same (one optimizer step per generation).
        per_device_train_batch_size=args.num_generations,
        gradient_accumulation_steps=args.prompts_per_step,
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
        log_completions=args.log_completions,
        report_to="none",
        seed=args.seed,
    )
    model, tokenizer = args.model, None
    if args.rft_rows and not args.resume:  # a resumed run loads the adapter from its checkpoint
        model, tokenizer = warm_start_by_rft(config, args, rft_rows, output / "rft")
    trainer = RewriterTrainer(
        model=model, args=config, train_dataset=grpo_rows, processing_class=tokenizer, callbacks=[JsonlLogCallback(output / "log.jsonl")]
    )
    if tokenizer is not None:
        # Built on a loaded PeftModel, the trainer only knows the checkpoint path it was loaded from: record the
        # model as named (the embedded alias keeps its GGUF hash), as when the trainer loads it itself.
        trainer.rewriter_config.__dict__.update(base_model_record(args.model))
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
