"""Does a rejection-sampling warm start give GRPO signal from its first steps? Feasible fraction of the first steps.

Two runs of ``examples/train_rewriter_gsm8k.py``, one after the other, same seed (hence the same GRPO prompts
in the same order: RFT rows are drawn from rows GRPO never prompts with), K = 8 candidates for each of 2
prompts per step, ``--steps`` steps, the full GRPO gate, a fresh LoRA:

* ``control``: no warm start (the recipe's GRPO alone);
* ``warm_start``: the LoRA first fine-tuned (RFT) on the prompted rewriter's accepted rewrites of
  ``--rft-rows`` rows, ``--rft-candidates`` sampled candidates per row (temperature 0.6, top_p 0.95).

Goal: the warm start raises the mean feasible fraction (``patch/feasible_fraction``, the share of the step's
16 candidates that pass the GRPO gate) over the first ``--steps`` GRPO steps above the control's; the control,
compared with itself, does not. Also reported per step: the zero-spread fraction (TRL's
``frac_reward_zero_std``: groups whose rewards are all equal, which give no gradient), completion length,
r_div and the two reward terms; the wall time of each run (and of its RFT stage). The run folders (logs,
completion tables with gate reasons, the RFT data set and its statistics) stay under ``--runs-dir``, outside
git, to be read.

Prints one JSON object on its last line and writes it to ``benchmarks/results/grpo_warm_start.json``, with a
plot of the feasible fraction per step of both runs (``grpo_warm_start.png``). Heavy: run it under the
benchmark lock, in the background; ``--only`` runs one of the two and ``--reuse`` keeps a finished run's folder,
so the two can run in stages:

    flock /tmp/hf-patchdist-bench.lock nohup python benchmarks/grpo_warm_start.py > /work/runs/grpo_warm_start.log 2>&1 &
    python benchmarks/grpo_warm_start.py --summary-only   # only the summary and plot of the run folders as they are
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("control", "warm_start")
PER_STEP_KEYS = {
    "feasible_fraction": "patch/feasible_fraction",
    "zero_spread_fraction": "frac_reward_zero_std",
    "mean_completion_length": "completions/mean_length",
    "r_div": "patch/r_div",
    "div_term": "patch/div_term",
    "dist_term": "patch/dist_term",
    "reward": "reward",
}


def run_command(name: str, args: argparse.Namespace, folder: Path) -> list[str]:
    command = [
        sys.executable, str(ROOT / "examples/train_rewriter_gsm8k.py"),
        "--data", args.data, "--output", str(folder), "--max-steps", str(args.steps),
        "--num-generations", str(args.num_generations), "--prompts-per-step", str(args.prompts_per_step),
        "--seed", str(args.seed), "--save-steps", "1000", "--log-completions",
    ]
    if args.max_question_copy is not None:
        command += ["--max-question-copy", str(args.max_question_copy)]
    if name == "warm_start" and args.rft_adapter:
        command += ["--init-adapter", args.rft_adapter]
    elif name == "warm_start":
        command += ["--rft-rows", str(args.rft_rows), "--rft-candidates", str(args.rft_candidates)]
    return command


def read_run(folder: Path, rft_folder: Path | None = None) -> dict:
    """Per-step series and summaries from a run folder's ``log.jsonl`` (and its RFT statistics, from ``rft_folder``
    when the warm start was built apart)."""
    log = folder / "log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    steps = [r for r in rows if "patch/feasible_fraction" in r]
    run: dict = {"steps": [r["step"] for r in steps]}
    for name, key in PER_STEP_KEYS.items():
        run[name] = [r.get(key) for r in steps]
    run["window_summaries"] = [{k: v for k, v in r.items() if k.startswith("patch_summary/") or k == "step"} for r in rows if any(k.startswith("patch_summary/") for k in r)]
    stats = (rft_folder or folder) / "rft" / "rft_stats.json"
    if stats.is_file():
        run["rft"] = json.loads(stats.read_text())
    timing = folder / "wall_seconds.json"
    if timing.is_file():
        run.update(json.loads(timing.read_text()))
    return run


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarize(runs: dict, steps: int) -> dict:
    """The verdict: mean feasible fraction of the first ``steps`` steps, warm start against the control."""
    summary: dict = {"mean_feasible_fraction": {}, "mean_zero_spread_fraction": {}, "mean_r_div": {}}
    for name, run in runs.items():
        first = {key: run.get(key, [])[:steps] for key in ("feasible_fraction", "zero_spread_fraction", "r_div")}
        summary["mean_feasible_fraction"][name] = mean(first["feasible_fraction"])
        summary["mean_zero_spread_fraction"][name] = mean(first["zero_spread_fraction"])
        summary["mean_r_div"][name] = mean(first["r_div"])
    complete = all(len(runs.get(name, {}).get("feasible_fraction", [])) >= steps for name in RUNS)
    control = summary["mean_feasible_fraction"].get("control")
    warm = summary["mean_feasible_fraction"].get("warm_start")
    summary["complete"] = complete
    summary["control_fails_goal"] = True if control is not None else None  # the control is not above itself
    summary["meets_goal"] = bool(complete and control is not None and warm is not None and warm > control)
    if complete and control is not None and warm is not None:
        summary["feasible_fraction_gain"] = warm - control
    return summary


def plot(runs: dict, path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, run in runs.items():
        x = run.get("steps", [])[:steps]
        for axis, key, title in ((axes[0], "feasible_fraction", "feasible fraction (16 candidates a step)"),
                                 (axes[1], "zero_spread_fraction", "zero-spread groups (no gradient)")):
            y = [v if v is not None else float("nan") for v in run.get(key, [])[:steps]]
            label = f"{name} (mean {mean(run.get(key, [])[:steps]) or 0:.2f})"
            axis.plot(x, y, "o-", alpha=0.8, label=label)
            axis.set_title(title)
            axis.set_xlabel("GRPO step")
            axis.set_ylim(-0.05, 1.05)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
    fig.suptitle("GRPO from a fresh adapter vs an RFT warm start (GSM8K, SmolLM2-135M, K = 8, 2 prompts a step)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/gsm8k/train.jsonl"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--rft-rows", type=int, default=128)
    parser.add_argument("--rft-candidates", type=int, default=4)
    parser.add_argument(
        "--rft-adapter", default=None,
        help="The warm start is this RFT rewriter, built apart (examples/train_rewriter_gsm8k.py --rft-only): GRPO starts "
        "from its adapter instead of building the RFT data again",
    )
    parser.add_argument("--max-question-copy", type=float, default=None, help="Both runs' GRPO gate restates at most this share of the question")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", default="/work/runs/grpo_warm_start")
    parser.add_argument("--only", choices=RUNS, default=None, help="Run only this one (the other is read if present)")
    parser.add_argument("--reuse", action="store_true", help="Keep a run folder whose log already has --steps steps")
    parser.add_argument("--summary-only", action="store_true", help="Run nothing: summarise and plot the run folders as they are")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/grpo_warm_start.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from hf_patchdist.verifiers import GATE_VERSION

    if not Path(args.data).is_file():
        args.data = "/work/shared/data/gsm8k/train.jsonl"

    runs_dir = Path(args.runs_dir)
    runs: dict = {}
    load: dict = {"before": [round(x, 2) for x in os.getloadavg()]}
    for name in RUNS:
        folder = runs_dir / name
        finished = len(read_run(folder)["feasible_fraction"]) >= args.steps
        if (args.only is None or args.only == name) and not (args.reuse and finished) and not args.summary_only:
            if folder.exists():
                for stale in ("log.jsonl", "wall_seconds.json"):
                    (folder / stale).unlink(missing_ok=True)
            folder.mkdir(parents=True, exist_ok=True)
            command = run_command(name, args, folder)
            print(f"[grpo_warm_start] {name}: {' '.join(command)}", file=sys.stderr, flush=True)
            start = time.perf_counter()
            with open(folder / "train.log", "w") as handle:
                code = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode
            seconds = time.perf_counter() - start
            (folder / "wall_seconds.json").write_text(json.dumps({"wall_seconds": round(seconds, 1), "exit_code": code, "load_after": [round(x, 2) for x in os.getloadavg()]}))
            print(f"[grpo_warm_start] {name}: exit {code} after {seconds:.0f} s", file=sys.stderr, flush=True)
        if (folder / "log.jsonl").is_file():
            runs[name] = read_run(folder, Path(args.rft_adapter) if name == "warm_start" and args.rft_adapter else None)
    load["after"] = [round(x, 2) for x in os.getloadavg()]

    result = {
        "benchmark": "grpo_warm_start",
        "goal": f"RFT warm start raises the mean feasible fraction of the first {args.steps} GRPO steps above the no-warm-start control's (same seed, same prompts)",
        "settings": {
            "model": "smollm2-135m-instruct", "data": "gsm8k train[1000:] (GRPO: all but the last 1024 shuffled rows; RFT: from those)",
            "steps": args.steps, "num_generations": args.num_generations, "prompts_per_step": args.prompts_per_step,
            "rft_rows": args.rft_rows, "rft_candidates": args.rft_candidates, "rft_sampling": {"temperature": 0.6, "top_p": 0.95},
            "rft_adapter": args.rft_adapter, "max_question_copy": args.max_question_copy,
            "seed": args.seed, "gate": "GRPO_GATE", "gate_version": GATE_VERSION, "example": "examples/train_rewriter_gsm8k.py (its defaults otherwise)",
            "runs_dir": str(runs_dir),
        },
        **summarize(runs, args.steps),
        "runs": runs,
        "load_average": load,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    if runs:
        plot(runs, output.with_suffix(".png"), args.steps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
