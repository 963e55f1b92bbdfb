"""Seconds per GRPO step of RewriterTrainer with each rollout engine, on the committed example's settings.

The committed GSM8K rewriter (``examples/rewriters/gsm8k-smollm2-135m``) was trained with
``examples/train_rewriter.yaml``: the embedded SmolLM2-135M-Instruct, GSM8K ``train[1000:]``, K = 4
candidates for each of 2 prompts per step, temperature 0.6, ``max_completion_length`` 160, LoRA r 16
on all linear layers, learning rate 1e-4, beta 0.001, precision left to the hardware. This script
trains ``--steps`` steps from the same seed (hence on the same prompts, in the same order) with each
rollout engine, one after the other in one process:

* ``trl_generate`` (control, the default before ``rollout_engine`` existed): TRL's
  ``model.generate`` on the K-times repeated prompts;
* ``decode_loop``: :class:`~hf_patchdist.trainers.rollout.DecodeLoopRollout` (each distinct prompt
  prefilled once, its K candidates share its keys and values, finished rows leave the batch,
  completions end at the final-answer line);
* ``trl_continuous_batching``: TRL's ``use_transformers_continuous_batching`` (transformers'
  ``generate_batch``); an error is recorded instead of a time when it does not run.

The first step of each engine is a warm-up and left out; the result is the median of the others,
and of the time spent in generation (TRL's ``_generate``) inside them. Goal:
``decode_loop`` median step time <= 0.5x ``trl_generate``'s (``decode_loop_over_generate``); the
control, compared with itself, is 1.0 and fails the goal. The first completions of each engine,
with their step's logged rewards, go to ``benchmarks/results/grpo_step_time_texts.json`` to be read
(a fast engine that writes nonsense is no win).

Prints one JSON object on its last line and writes it to ``benchmarks/results/grpo_step_time.json``.
Run it under ``flock /tmp/hf-patchdist-bench.lock`` (one timed job on the machine at a time):

    flock /tmp/hf-patchdist-bench.lock python benchmarks/grpo_step_time.py            # ~15 min on 2 CPU cores
    python benchmarks/grpo_step_time.py --steps 3 --engines trl_generate decode_loop
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script from a checkout: import the package of this checkout.
sys.path.insert(0, str(ROOT))

ENGINES = {
    "trl_generate": {"rollout_engine": "trl"},
    "decode_loop": {"rollout_engine": "decode_loop"},
    "trl_continuous_batching": {"rollout_engine": "trl", "use_transformers_continuous_batching": True},
}
CONTROL, CANDIDATE = "trl_generate", "decode_loop"
GOAL_RATIO = 0.5

# examples/train_rewriter.yaml, the settings the committed rewriter was trained with.
EXAMPLE_SETTINGS = dict(
    num_generations=4,
    per_device_train_batch_size=8,  # prompts_per_step 2 x num_generations 4
    temperature=0.6,
    max_completion_length=160,
    lambda_dist=0.35,
    lambda_div=0.5,
    verifier={"name": "math", "strict": True, "max_reference_copy": 0.9},
    learning_rate=1.0e-4,
    lr_scheduler_type="constant",
    beta=0.001,
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.0,
    lora_target_modules="all-linear",
    logging_steps=1,
    seed=0,
    report_to="none",
    save_strategy="no",
    gradient_checkpointing=False,  # examples/train_rewriter_gsm8k.py and train-rewriter turn it off
)


def load_prompts(path: str, split: str):
    from hf_patchdist.data import load_any_dataset

    return load_any_dataset(path, split=split)


def run_engine(name: str, dataset, steps: int, keep_texts: int) -> dict:
    """Train ``steps`` steps with one engine; per-step wall time, generation time, logs and texts."""
    from transformers import TrainerCallback

    from hf_patchdist import RewriterGRPOConfig, RewriterTrainer

    step_seconds: list[float] = []
    generation_seconds: list[float] = []
    texts: list[dict] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()
            generation_seconds.append(0.0)

        def on_step_end(self, args, state, control, **kwargs):
            step_seconds.append(time.perf_counter() - self.start)
            print(f"[grpo_step_time] {name} step {len(step_seconds)}: {step_seconds[-1]:.1f} s "
                  f"(generation {generation_seconds[-1]:.1f} s), load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as output:
        args = RewriterGRPOConfig(output, max_steps=steps, **EXAMPLE_SETTINGS, **ENGINES[name])
        trainer = RewriterTrainer(model="smollm2-135m-instruct", args=args, train_dataset=dataset, callbacks=[StepTimer()])
        generate = trainer._generate

        def timed_generate(prompts):
            start = time.perf_counter()
            result = generate(prompts)
            generation_seconds[-1] += time.perf_counter() - start
            completion_ids, completions = result[1], result[3]
            for prompt, ids, completion in zip(prompts, completion_ids, completions):
                if len(texts) < keep_texts:
                    content = completion[-1]["content"] if isinstance(completion, list) else completion
                    question = prompt[-1]["content"].split("\n\nReference solution:")[0] if isinstance(prompt, list) else prompt
                    texts.append({"step": len(step_seconds), "question": question, "tokens": len(ids), "completion": content})
            return result

        trainer._generate = timed_generate
        trainer.train()
        logs = [
            {k: entry[k] for k in ("step", "reward", "patch/feasible_fraction", "completions/mean_length", "completions/clipped_ratio") if k in entry}
            for entry in trainer.state.log_history
            if "reward" in entry
        ]
        precision = "bf16" if args.bf16 else "float32"
        del trainer
        gc.collect()
    timed = step_seconds[1:]
    timed_generation = generation_seconds[1:]
    return {
        "precision": precision,
        "step_seconds": [round(s, 2) for s in step_seconds],
        "generation_seconds": [round(s, 2) for s in generation_seconds],
        "median_step_seconds": round(statistics.median(timed), 2),
        "median_generation_seconds": round(statistics.median(timed_generation), 2),
        "logs": logs,
        "texts": texts,
    }


def summarize(results: dict) -> dict:
    """The verdict: decode loop over TRL's generate, the control's own ratio, the fastest engine that ran."""
    times = {name: r["median_step_seconds"] for name, r in results.items() if "median_step_seconds" in r}
    summary: dict = {"median_step_seconds": times}
    if CONTROL not in times or CANDIDATE not in times:
        summary.update(meets_goal=False, reason="the control or the decode loop did not run")
        return summary
    ratios = {name: round(seconds / times[CONTROL], 3) for name, seconds in times.items()}
    generation = {name: r["median_generation_seconds"] for name, r in results.items() if "median_generation_seconds" in r}
    summary.update(
        step_time_over_generate=ratios,
        generation_time_over_generate={name: round(seconds / generation[CONTROL], 3) for name, seconds in generation.items()},
        decode_loop_over_generate=ratios[CANDIDATE],
        control_fails_goal=ratios[CONTROL] > GOAL_RATIO,
        fastest_engine=min(times, key=times.get),
        generation_share_of_step={
            name: round(statistics.median(g / s for g, s in zip(r["generation_seconds"][1:], r["step_seconds"][1:])), 3)
            for name, r in results.items()
            if "step_seconds" in r
        },
    )
    # No rollout engine can make a step faster than its non-generation part (log-probabilities, reference
    # forward, loss and backward): the ratio the control's steps would reach if generation cost nothing.
    share = summary["generation_share_of_step"]
    summary["bound_with_free_generation"] = round(1 - share[CONTROL], 3) if CONTROL in share else None
    summary["meets_goal"] = bool(summary["control_fails_goal"] and ratios[CANDIDATE] <= GOAL_RATIO)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/gsm8k/train.jsonl"))
    parser.add_argument("--split", default="train[1000:]")
    parser.add_argument("--steps", type=int, default=5, help="steps per engine; the first is a warm-up")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--texts", type=int, default=24, help="completions kept per engine for reading")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/grpo_step_time.json"))
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is a warm-up)")
    if not Path(args.data).exists():
        args.data = "/work/shared/data/gsm8k/train.jsonl"

    dataset = load_prompts(args.data, args.split)
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.time()
    results: dict = {}
    for name in args.engines:
        print(f"[grpo_step_time] {name}: {args.steps} steps", file=sys.stderr, flush=True)
        try:
            results[name] = run_engine(name, dataset, args.steps, args.texts)
        except Exception as error:  # an engine that does not run on this machine is reported, not fatal
            results[name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-2000:]}
        print(f"[grpo_step_time] {name}: {({k: v for k, v in results[name].items() if k not in ('texts', 'logs', 'traceback')})}", file=sys.stderr, flush=True)

        # Written after each engine, so that a run cut short still leaves what it measured.
        result = build_result(args, results, load_before, started, complete=name == args.engines[-1])
    print(json.dumps(result))


def build_result(args: argparse.Namespace, results: dict, load_before: list[float], started: float, complete: bool) -> dict:
    import torch

    texts = {name: r.get("texts", []) for name, r in results.items()}
    engines = {name: {k: v for k, v in r.items() if k != "texts"} for name, r in results.items()}
    result = {
        "benchmark": "grpo_step_time",
        "goal": f"decode_loop median GRPO step time <= {GOAL_RATIO}x TRL generate's, same settings, same run",
        "complete": complete,
        "settings": {**{k: v for k, v in EXAMPLE_SETTINGS.items() if k != "verifier"}, "verifier": EXAMPLE_SETTINGS["verifier"],
                     "model": "smollm2-135m-instruct", "data": f"gsm8k {args.split}", "steps": args.steps, "warm_up_steps": 1},
        **summarize(results),
        "engines": engines,
        "texts_file": "benchmarks/results/grpo_step_time_texts.json",
        "loadavg_before": load_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.time() - started, 1),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    output.with_name(output.stem + "_texts.json").write_text(json.dumps(texts, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
