"""Peak resident memory of RewriterTrainer: one backbone serves as policy, reference and pi_0 scorer.

Three configurations, each in a fresh process (peak RSS of a process only grows), same model, data,
batch and completion length, a few GRPO steps each:

* ``baseline``: a constant reward and ``beta = 0`` (no reference, no scorer): the floor;
* ``patch``: ``PatchReward`` (gate + NLL + embedding under pi_0) and ``beta > 0`` (KL to pi_0), with
  pi_0 = the same backbone with the adapter disabled;
* ``second_copy`` (control): as ``patch`` but with a separate scorer model, a second copy of the
  backbone in memory, to show that the measurement can see one.

Goal: ``patch / baseline <= 1.25``. Prints one JSON object on its last line and writes it to
``benchmarks/results/grpo_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def constant_reward(prompts, completions, **kwargs):
    return [1.0] * len(completions)


def run_one(mode: str, args: argparse.Namespace) -> dict:
    """Inside the child process: build the trainer, train a few steps, report peak RSS."""
    import tempfile

    from datasets import load_dataset

    from hf_patchdist import PatchReward, RewriterTrainer, RewriterGRPOConfig

    dataset = load_dataset("json", data_files=args.data, split="train[1000:1016]")
    with tempfile.TemporaryDirectory() as output:
        config = RewriterGRPOConfig(
            output,
            max_steps=args.steps,
            per_device_train_batch_size=4,
            num_generations=4,
            max_completion_length=args.max_completion_length,
            beta=0.0 if mode == "baseline" else 0.001,
            lora_r=16,
            lora_alpha=32,
            gradient_checkpointing=False,
            save_strategy="no",
            report_to="none",
            scorer_model=args.model if mode == "second_copy" else None,
        )
        reward = [constant_reward] if mode == "baseline" else [PatchReward()]
        start = time.perf_counter()
        trainer = RewriterTrainer(model=args.model, args=config, train_dataset=dataset, reward_funcs=reward)
        trainer.train()
        seconds = time.perf_counter() - start
    return {"mode": mode, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/gsm8k/train.jsonl"))
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--max-completion-length", type=int, default=48)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/grpo_memory.json"))
    args = parser.parse_args()

    if args.child:
        print(json.dumps(run_one(args.child, args)))
        return

    runs = {}
    for mode in ("baseline", "patch", "second_copy"):
        cmd = [sys.executable, __file__, "--child", mode, "--data", args.data, "--model", args.model,
               "--steps", str(args.steps), "--max-completion-length", str(args.max_completion_length)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
        runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{mode}: {runs[mode]['peak_rss_mb']:.0f} MB", file=sys.stderr)
    baseline = runs["baseline"]["peak_rss_mb"]
    result = {
        "model": args.model,
        "steps": args.steps,
        "max_completion_length": args.max_completion_length,
        "peak_rss_mb": {mode: run["peak_rss_mb"] for mode, run in runs.items()},
        "patch_over_baseline": runs["patch"]["peak_rss_mb"] / baseline,
        "second_copy_over_baseline": runs["second_copy"]["peak_rss_mb"] / baseline,
        "goal_patch_over_baseline": 1.25,
        "meets_goal": runs["patch"]["peak_rss_mb"] / baseline <= 1.25,
        "seconds": {mode: run["seconds"] for mode, run in runs.items()},
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
