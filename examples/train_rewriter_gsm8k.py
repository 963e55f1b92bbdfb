"""Train a GSM8K rewriter with GRPO on a CPU (Stage I), then save it as a small bf16 LoRA.

    python examples/train_rewriter_gsm8k.py --output runs/gsm8k-rewriter --max-steps 40
    python examples/train_rewriter_gsm8k.py --output runs/gsm8k-rewriter --max-steps 40 --resume   # continue
    python examples/train_rewriter_gsm8k.py --output runs/gsm8k-rewriter-rft --rft-rows 512 --rft-candidates 8 --rft-only
    python examples/train_rewriter_gsm8k.py --output runs/gsm8k-rewriter-rft2 --rft-rows 1024 --rft-candidates 8 --rft-only --rft-rewriter runs/gsm8k-rewriter-rft
    python examples/train_rewriter_gsm8k.py --output runs/gsm8k-rewriter-grpo --init-adapter runs/gsm8k-rewriter-rft

The recipe: a fresh LoRA adapter, the full GRPO gate (``GRPO_GATE``: strict, copies of the expert answer
and skipped steps fail), K = 8 candidates per prompt and two prompts per step (each process scores
``per_device_train_batch_size * steps_per_generation`` = 16 completions, whole groups of 8; one group per
forward pass, two accumulated per optimizer step, which halves the memory of a step). With
``--rft-rows N`` the adapter is first warm-started by rejection-sampling fine-tuning (RFT): the prompted
rewriter (the backbone without adapter, ``--rft-candidates`` sampled candidates per row at temperature 0.6,
top_p 0.95, on the default generation backend: OpenVINO on CPU when installed) patches N rows under :func:`rft_gate`
(the Stage II gate of the GRPO gate, with no more than half of the expert answer's words kept and little of the
question restated), keeping a rewrite only when its pi_0 NLL is below the expert answer's, and the LoRA is
fine-tuned with TRL's ``SFTTrainer`` on (rewriting prompt -> lowest-NLL accepted rewrite) of the rows it
rewrote (completion-only loss). ``--rft-only`` stops there and saves that adapter as the rewriter. The
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
from hf_patchdist.verifiers import GRPO_GATE, reference_similarity, stage_ii_gate

RFT_RESERVE = 1024
"""The last rows of the shuffled split are RFT's; GRPO never prompts with them."""

RFT_MAX_REFERENCE_COPY = 0.5
RFT_MAX_QUESTION_COPY = 0.2


def rft_gate(args: argparse.Namespace) -> dict:
    """The gate of the RFT data: what the warm start imitates is what the rewriter should write.

    The GRPO gate's checks without its GRPO-only ones (Stage II trims trailing text and has no step-count
    check; the math verifier's default ``min_intermediate_recall=1.0`` already requires every result of the
    expert), stricter on copying: by default at most half of the expert answer's words kept in order (the
    committed GRPO rewriter kept half or more in 96% of its rewrites) and at most 20% of the question's words
    restated (two thirds of its rewrites opened with a copied question sentence, which lowers the mean NLL
    without being the model's own words).
    """
    return {**stage_ii_gate(GRPO_GATE), "max_reference_copy": args.rft_max_reference_copy, "max_question_copy": args.rft_max_question_copy}



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
    """Patch ``rows`` with the prompted rewriter, or the rewriter of ``--rft-rewriter`` (best of ``--rft-candidates``
    samples under :func:`rft_gate`).

    ``model`` is the backbone by name (the default generation backend loads it, with ``--rft-rewriter``'s adapter
    when given: one round of expert iteration) or loaded together with ``tokenizer`` (then generation runs on
    ``backend`` or transformers). Returns the SFT rows
    (conversational prompt-completion) of the rows it rewrote; writes every row's candidates and verdicts,
    the accepted set and their statistics under ``folder``.
    """
    rewriter_config = RewriterConfig(
        prompt_template=config.prompt_template,
        system_prompt=config.system_prompt,
        keep_rejected=True,
        generation={"max_new_tokens": config.max_completion_length},
        # Stated here, not left to RewriterConfig's defaults (the same values today): the RFT data depend on them.
        sampling={"do_sample": True, "temperature": 0.6, "top_p": 0.95},
    )
    adapter = getattr(args, "rft_rewriter", None)
    if adapter is not None and tokenizer is not None:
        raise ValueError("--rft-rewriter samples with the default backend: give the backbone by name")
    gate = rft_gate(args)
    rewriter = Rewriter(
        model, tokenizer, adapter=adapter, config=rewriter_config, verifier=gate, num_candidates=args.rft_candidates,
        require_lower_nll=args.rft_require_lower_nll,
        batch_size=16, backend=backend,
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
                             "nll_expert": row["patch_nll_original"], "nll_rewrite": row["patch_nll_kept"],
                             "reference_similarity": reference_similarity(row["answer"], original["answer"])})
    with open(folder / "rft_data.jsonl", "w") as handle:
        for row in accepted:
            handle.write(json.dumps(row) + "\n")
    rejected = Counter(c["reason"] for row in patched for c in row["patch_rejected"])
    candidates = len(rows) * args.rft_candidates
    stats = {
        "rows": len(rows),
        "candidates_per_row": args.rft_candidates,
        "sampled_by": adapter or "prompted backbone",
        "generation": {k: v for k, v in vars(rewriter.generation_settings).items() if k != "batch_size"},
        "gate": gate,
        "require_lower_nll": args.rft_require_lower_nll,
        "rewritten_rows": len(accepted),
        "row_acceptance": len(accepted) / len(rows) if len(rows) else 0.0,
        "feasible_candidate_fraction": (candidates - sum(rejected.values())) / candidates if candidates else 0.0,
        "rows_by_source": dict(Counter(patched["patch_source"])),
        "rejected_candidates_by_reason": dict(rejected.most_common()),
        "mean_nll_expert_of_rewritten": sum(r["nll_expert"] for r in accepted) / len(accepted) if accepted else None,
        "mean_nll_rewrite": sum(r["nll_rewrite"] for r in accepted) / len(accepted) if accepted else None,
        "mean_reference_similarity": sum(r["reference_similarity"] for r in accepted) / len(accepted) if accepted else None,
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

    # Sampling by name lets the default backend (OpenVINO on CPU) load its own copy; a test's backend needs the loaded model.
    model, tokenizer = load_model_and_tokenizer(args.model, **backbone_init_kwargs(config))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if backend is None:
        sft_rows = rejection_sampling_data(args.model, None, rows, config, args, folder)
    else:
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


def save_rft_rewriter(trainer: RewriterTrainer, output: Path) -> None:
    """Save the warm start as the rewriter (``--rft-only``), its RFT statistics in the saved ``training_summary``
    (the GRPO steps are 0)."""
    trainer.save_rewriter(output)
    config_file = output / "rewriter_config.json"
    saved = json.loads(config_file.read_text())
    saved.setdefault("training_summary", {})["rft"] = json.loads((output / "rft" / "rft_stats.json").read_text())
    config_file.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")


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
    parser.add_argument(
        "--max-question-copy", type=float, default=None,
        help="GRPO gate: largest share of the question's words a candidate may restate (default: the gate's 0.5); the "
        "rewriter's Stage II gate keeps it",
    )
    parser.add_argument("--rft-max-reference-copy", type=float, default=RFT_MAX_REFERENCE_COPY, help="RFT data: largest share of the expert answer's words kept")
    parser.add_argument("--rft-max-question-copy", type=float, default=RFT_MAX_QUESTION_COPY, help="RFT data: largest share of the question's words restated")
    parser.add_argument(
        "--rft-any-nll", dest="rft_require_lower_nll", action="store_false",
        help="RFT data: keep a rewrite whatever its NLL (default: only one below its expert answer's, as Stage II's require_lower_nll)",
    )
    parser.add_argument(
        "--rft-rewriter", default=None,
        help="Sample the RFT data with this saved rewriter's adapter instead of the prompted backbone (a second round of "
        "expert iteration: the new LoRA starts fresh from pi_0 and learns from the better rewriter's accepted rewrites)",
    )
    parser.add_argument("--rft-only", action="store_true", help="Stop after the RFT warm start and save its adapter as the rewriter")
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
    if args.max_question_copy is not None:
        config.verifier = {**config.verifier, "max_question_copy": args.max_question_copy}
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
    if args.rft_only:
        if not args.rft_rows:
            raise SystemExit("--rft-only needs --rft-rows")
        save_rft_rewriter(trainer, output)
    else:
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
