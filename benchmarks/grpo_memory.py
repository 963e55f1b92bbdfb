"""Peak resident memory of RewriterTrainer: one backbone serves as policy, reference and pi_0 scorer.

The claim under test: scoring rewrites under pi_0 with the trained backbone's adapter switched off
costs much less memory than a second copy of the backbone would. Three configurations, same model,
data, batch and completion length, ``--steps`` GRPO steps each, every run in a fresh process (the
peak RSS of a process only grows), ``--repeats`` runs of each, interleaved (baseline, patch,
second_copy, baseline, ...) so that load on the machine drifts over all three alike:

* ``baseline``: a constant reward and ``beta = 0`` (no reference, no scorer): the floor;
* ``patch``: ``PatchReward`` (NLL + embedding under pi_0) and ``beta > 0`` (KL to pi_0), with
  pi_0 = the same backbone with the adapter disabled;
* ``second_copy`` (control): as ``patch`` but with a separate scorer model, i.e. a second copy of
  the backbone in memory.

Design choices, so that one copy of a ~270 MB model is visible in the peak:

* small activations: 2 completions of 16 tokens per step, one prompt per step, gradient
  checkpointing on (the peak of the earlier version, 4 x 4 completions of 48 tokens without
  checkpointing, was ~5 GB, set by the training step, and its run-to-run noise was larger than
  the model; here the peak is ~1.8 GB and still set by the training step's backward pass);
* every completion is scored: a 16-token completion is truncated and would fail the real gate,
  and ``PatchReward`` scores only candidates that pass it, so the pi_0 forward pass would never
  run. The benchmark gives ``PatchReward`` a gate that accepts everything (``AcceptAll``) and
  counts the answers the scorer actually scored (``scored_answers``); the gate's own cost is
  text processing, not memory;
* glibc's malloc with a fixed mmap threshold (``MALLOC_MMAP_THRESHOLD_=65536`` in each run's
  environment): every block of 64 KiB or more is mapped on allocation and unmapped on free, so the
  peak counts live memory. With glibc's default, the threshold rises to up to 32 MB as blocks are
  freed, freed blocks below it stay in the heap, and the peak of identical runs varied by up to
  120 MB (against ~2 MB with the fixed threshold); ``--malloc-mmap-threshold 0`` restores the
  default;
* the median of the repeats per configuration, and the spread (max - min) of each.

Goal: the patch's extra memory is at most a quarter of what a second copy costs,
``patch_share = (patch - baseline) / (second_copy - baseline) <= 0.25`` (medians). The control's
share is 1 by construction, so what the control has to show is that the run can see a second copy
at all: ``second_copy - baseline`` must exceed twice the largest spread of any configuration;
otherwise the run cannot tell and ``meets_goal`` is false with the reason in ``reason``.

Prints one JSON object on its last line and writes it to ``benchmarks/results/grpo_memory.json``.

    python benchmarks/grpo_memory.py                 # 3 configurations x 5 repeats, ~50 s a run
    python benchmarks/grpo_memory.py --repeats 3 --max-completion-length 48
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script from a checkout: import the package of this checkout.
sys.path.insert(0, str(ROOT))

MODES = ("baseline", "patch", "second_copy")
GOAL_SHARE = 0.25
MIN_SEPARATION = 2.0  # second_copy - baseline must exceed this many times the largest spread


def constant_reward(prompts, completions, **kwargs):
    return [1.0] * len(completions)


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def accept_all_verifier():
    """A gate that passes every candidate, so that PatchReward scores all of them under pi_0."""
    from hf_patchdist.verifiers.base import VerificationResult, Verifier

    class AcceptAll(Verifier):  # no ``name``: not registered in the verifier registry
        def __call__(self, candidate, reference, **kwargs):
            return VerificationResult(True, "", candidate if isinstance(candidate, str) else "")

        def _check(self, text, reference, question):  # not reached: __call__ is overridden
            return VerificationResult(True, "", text)

    return AcceptAll()


def run_one(mode: str, args: argparse.Namespace) -> dict:
    """Inside the child process: build the trainer, train a few steps, report peak RSS."""
    import tempfile

    import torch
    from datasets import load_dataset

    torch.set_num_threads(args.threads)
    from hf_patchdist import PatchReward, RewriterGRPOConfig, RewriterTrainer
    from hf_patchdist.scoring import QAScorer

    scored = {"calls": 0, "answers": 0}
    original_score = QAScorer.score

    def counting_score(self, prompts, answers):
        scored["calls"] += 1
        scored["answers"] += len(answers)
        return original_score(self, prompts, answers)

    QAScorer.score = counting_score

    prompts = args.steps * args.batch_size // args.num_generations
    dataset = load_dataset("json", data_files=args.data, split=f"train[{args.first_row}:{args.first_row + prompts}]")
    with tempfile.TemporaryDirectory() as output:
        config = RewriterGRPOConfig(
            output,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            num_generations=args.num_generations,
            max_completion_length=args.max_completion_length,
            beta=0.0 if mode == "baseline" else 0.001,
            lora_r=16,
            lora_alpha=32,
            gradient_checkpointing=True,  # smaller training-step activations: the model's share of the peak grows
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=0,
            scorer_model=args.model if mode == "second_copy" else None,
        )
        reward = [constant_reward] if mode == "baseline" else [PatchReward(accept_all_verifier())]
        start = time.perf_counter()
        trainer = RewriterTrainer(model=args.model, args=config, train_dataset=dataset, reward_funcs=reward)
        init_seconds = time.perf_counter() - start
        rss_after_init = current_rss_mb()
        policy = trainer.accelerator.unwrap_model(trainer.model)
        scorer_models = [r.scorer.model for r in trainer.reward_funcs if getattr(r, "scorer", None) is not None]
        trainer.train()
        seconds = time.perf_counter() - start
    # The base model's parameters (LoRA excluded): what one copy holds.
    model_mb = sum(p.numel() * p.element_size() for n, p in policy.named_parameters() if "lora_" not in n) / 2**20
    return {
        "mode": mode,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_init_mb": rss_after_init,
        "model_mb": model_mb,
        "dtype": str(next(policy.parameters()).dtype).removeprefix("torch."),
        "scorer": "none" if not scorer_models else ("shared backbone" if all(m is policy for m in scorer_models) else "separate model"),
        "scored_answers": scored["answers"],
        "init_seconds": init_seconds,
        "seconds": seconds,
        "torch_threads": torch.get_num_threads(),
    }


def summarize(runs: dict[str, list[dict]]) -> dict:
    """Medians, spreads, shares and the verdict from the per-run records (pure: unit-testable)."""
    peaks = {mode: [r["peak_rss_mb"] for r in runs[mode]] for mode in MODES}
    median = {mode: statistics.median(values) for mode, values in peaks.items()}
    spread = {mode: max(values) - min(values) for mode, values in peaks.items()}
    patch_cost = median["patch"] - median["baseline"]
    copy_cost = median["second_copy"] - median["baseline"]
    largest_spread = max(spread.values())
    resolvable = copy_cost > MIN_SEPARATION * largest_spread
    patch_share = patch_cost / copy_cost if copy_cost > 0 else None
    control_share = 1.0 if copy_cost > 0 else None  # (second_copy - baseline) / itself
    scoring_ran = all(r["scored_answers"] > 0 for mode in ("patch", "second_copy") for r in runs[mode])
    if not resolvable:
        reason = (
            f"cannot tell: second_copy - baseline = {copy_cost:.0f} MB is not above {MIN_SEPARATION:g}x the largest "
            f"run-to-run spread ({largest_spread:.0f} MB)"
        )
    elif not scoring_ran:
        reason = "invalid: the pi_0 scorer scored nothing in some patch/second_copy run"
    elif patch_share <= GOAL_SHARE:
        reason = f"met: the shared backbone costs {patch_share:.2f} of a second copy (goal <= {GOAL_SHARE})"
    else:
        reason = f"not met: the shared backbone costs {patch_share:.2f} of a second copy (goal <= {GOAL_SHARE})"
    control_fails = resolvable and control_share is not None and control_share > GOAL_SHARE
    return {
        "peak_rss_mb": peaks,
        "median_peak_rss_mb": median,
        "spread_mb": spread,
        "largest_spread_mb": largest_spread,
        "patch_cost_mb": patch_cost,
        "second_copy_cost_mb": copy_cost,
        "patch_share": patch_share,
        "control_share": control_share,
        "goal_patch_share": GOAL_SHARE,
        "min_separation": MIN_SEPARATION,
        "resolvable": resolvable,
        "scoring_ran": scoring_ran,
        "control_fails_goal": control_fails,
        "meets_goal": bool(resolvable and scoring_ran and control_fails and patch_share <= GOAL_SHARE),
        "reason": reason,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/gsm8k/train.jsonl"))
    parser.add_argument("--first-row", type=int, default=1000, help="First GSM8K row (GRPO prompts are train[1000:])")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2, help="per_device_train_batch_size (completions per step)")
    parser.add_argument("--num-generations", type=int, default=2)
    parser.add_argument("--max-completion-length", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per run (default 1: on a shared machine 2 threads ran a run 5x slower; memory is what is measured)")
    parser.add_argument("--malloc-mmap-threshold", type=int, default=65536,
                        help="MALLOC_MMAP_THRESHOLD_ for each run (default 65536; 0: glibc's default dynamic threshold)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/grpo_memory.json"))
    args = parser.parse_args()

    if args.child:
        print(json.dumps(run_one(args.child, args)))
        return

    wall = time.perf_counter()
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        for mode in MODES:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--data", args.data,
                   "--first-row", str(args.first_row), "--model", args.model, "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--num-generations", str(args.num_generations),
                   "--max-completion-length", str(args.max_completion_length), "--threads", str(args.threads)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            env.pop("MALLOC_MMAP_THRESHOLD_", None)
            if args.malloc_mmap_threshold:
                env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            if done.returncode != 0:
                raise SystemExit(f"{mode} (repeat {repeat}) failed:\n{done.stderr[-3000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            runs[mode].append(run)
            print(f"repeat {repeat} {mode}: {run['peak_rss_mb']:.0f} MB peak, {run['rss_after_init_mb']:.0f} MB after init, "
                  f"{run['scored_answers']} answers scored, {run['seconds']:.0f} s", file=sys.stderr, flush=True)
    import torch

    first = runs["baseline"][0]
    result = {
        "benchmark": "grpo_memory",
        "model": args.model,
        "dtype": first["dtype"],
        "model_mb": first["model_mb"],
        "steps": args.steps,
        "per_device_train_batch_size": args.batch_size,
        "num_generations": args.num_generations,
        "prompts": args.steps * args.batch_size // args.num_generations,
        "max_completion_length": args.max_completion_length,
        "repeats": args.repeats,
        "threads": args.threads,
        "malloc_mmap_threshold": args.malloc_mmap_threshold or "glibc default (dynamic)",
        "gradient_checkpointing": True,
        "gate": "AcceptAll (every completion scored under pi_0)",
        **summarize(runs),
        "rss_after_init_mb": {mode: [r["rss_after_init_mb"] for r in runs[mode]] for mode in MODES},
        "scorer": {mode: sorted({r["scorer"] for r in runs[mode]}) for mode in MODES},
        "scored_answers": {mode: [r["scored_answers"] for r in runs[mode]] for mode in MODES},
        "seconds": {mode: [round(r["seconds"], 1) for r in runs[mode]] for mode in MODES},
        "wall_seconds": round(time.perf_counter() - wall, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, {first['torch_threads']} threads",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
