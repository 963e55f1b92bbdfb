"""How large is r_div on real GRPO rollouts, with the embeddings raw (the paper) and centred on a running mean?

Reads the completion tables (``completions/*.parquet``, written with ``log_completions``) of GRPO runs of
``examples/train_rewriter_gsm8k.py`` (default: the two runs of ``benchmarks/grpo_warm_start.py``: the embedded
SmolLM2-135M-Instruct, GSM8K ``train[1000:]`` prompts, K = 8 candidates per prompt), takes each candidate's
recorded gate verdict, embeds the candidates under pi_0 (the backbone without adapter, QA(q) = the question as a
user turn, as the reward does) and computes r_div step by step as training did:

* ``raw`` (control, ``diversity_centering="none"``): cosines between the mean-pooled embeddings;
* ``running_mean`` (the default now): the embeddings centred on the running mean of the earlier steps' candidates
  (momentum 0.99), updated after each step.

Two views: ``feasible`` (r_div as training computes it: among each group's candidates that passed the GRPO gate,
groups with fewer than two give 0) and ``all`` (every non-empty candidate counted, to see the magnitude on more
groups than the few with two feasible candidates). Reported: the groups' mean pairwise distance ``(1 - cos) / 2``
(how far apart the embeddings are), mean and standard deviation of r_div over the
candidates of groups with at least two members, the mean within-group standard deviation (what reaches GRPO's
advantages), and ``lambda_div * r_div`` next to ``lambda_dist * r_dist``'s within-group spread.

Goal: centred r_div's mean (view ``all``) at least 10x the raw one's; the raw control, compared with itself, is
1x and fails. Prints one JSON object on its last line and writes ``benchmarks/results/r_div_centring.json``:

    flock /tmp/hf-patchdist-bench.lock python benchmarks/r_div_centring.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_RATIO = 10.0
LAMBDA_DIST, LAMBDA_DIV = 0.35, 0.5
PROMPT_PATTERN = re.compile(r"^Question:\n(?P<question>.*?)\n\nReference solution:\n(?P<answer>.*?)\n\nSolve the question", re.S)


def read_steps(folder: Path) -> list[dict]:
    """Each step's candidates from a run's completion tables: question, text, gate verdict, group."""
    import pandas as pd

    from hf_patchdist.rewards import completion_text, group_indices

    steps = []
    for path in sorted((folder / "completions").glob("completions_*.parquet")):
        table = pd.read_parquet(path)
        prompts = [completion_text(list(p)) for p in table["prompt"]]
        parsed = [PROMPT_PATTERN.match(p) for p in prompts]
        if not all(parsed):
            raise ValueError(f"{path}: a prompt is not in the default rewriting template")
        steps.append({
            "questions": [m["question"] for m in parsed],
            "answers": [m["answer"] for m in parsed],
            "texts": [completion_text(list(c)) for c in table["completion"]],
            "feasible": [reason == "pass" for reason in table["gate_reason"]],
            "groups": group_indices(prompts),
        })
    return steps


def measure(steps: list[dict], scorer, tokenizer, view: str) -> dict:
    import torch

    from hf_patchdist.formats import QAExample
    from hf_patchdist.rewards import RunningEmbeddingMean, alignment_rewards, diversity_rewards, mean_pairwise_distance
    from hf_patchdist.scoring import qa_prompt_of

    running = RunningEmbeddingMean(0.99)
    values: dict[str, list[float]] = {"raw": [], "running_mean": []}
    spreads: dict[str, list[float]] = {"raw": [], "running_mean": [], "r_dist": []}
    distances: dict[str, list[float]] = {"raw": [], "running_mean": []}
    groups_counted = 0
    for step in steps:
        members = [i for i, text in enumerate(step["texts"]) if (step["feasible"][i] if view == "feasible" else text.strip())]
        if not members:
            continue
        chosen = [i in members for i in range(len(step["texts"]))]
        prompts = [qa_prompt_of(tokenizer, QAExample(step["questions"][i], None, [])) for i in members]
        scores = scorer.score(prompts, [step["texts"][i] for i in members])
        embeddings = torch.zeros(len(step["texts"]), scores.embeddings.shape[-1])
        nll = [None] * len(step["texts"])
        for position, i in enumerate(members):
            embeddings[i] = scores.embeddings[position]
            nll[i] = scores.nll[position]
        per_view = {
            "raw": diversity_rewards(embeddings, chosen, step["groups"]),
            "running_mean": diversity_rewards(embeddings, chosen, step["groups"], center=running.mean),
        }
        r_dist = alignment_rewards(nll, chosen, step["groups"])
        previous_mean = running.mean
        running.update(embeddings[members].sum(dim=0), len(members))
        for group in step["groups"]:
            inside = [i for i in group if chosen[i]]
            if len(inside) < 2:
                continue
            groups_counted += 1
            distances["raw"].append(mean_pairwise_distance(embeddings[inside]))
            if previous_mean is not None:  # the first step has no mean yet (its r_div is the raw one)
                distances["running_mean"].append(mean_pairwise_distance(embeddings[inside] - previous_mean))
            for name, rewards in per_view.items():
                group_values = [rewards[i] for i in inside]
                values[name] += group_values
                spreads[name].append(_std(group_values))
            spreads["r_dist"].append(_std([r_dist[i] for i in inside]))
    result = {"groups_with_two_or_more": groups_counted, "candidates": len(values["raw"])}
    for name in ("raw", "running_mean"):
        result[name] = {
            "mean_pairwise_distance_in_group": _mean(distances[name]),
            "mean": _mean(values[name]),
            "std": _std(values[name]),
            "within_group_std": _mean(spreads[name]),
            "lambda_div_times_mean": LAMBDA_DIV * _mean(values[name]) if values[name] else None,
            "lambda_div_times_within_group_std": LAMBDA_DIV * _mean(spreads[name]) if spreads[name] else None,
        }
    result["lambda_dist_times_r_dist_within_group_std"] = LAMBDA_DIST * _mean(spreads["r_dist"]) if spreads["r_dist"] else None
    raw, centred = result["raw"]["mean"], result["running_mean"]["mean"]
    result["centred_over_raw"] = centred / raw if raw else None
    return result


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _std(values: list[float]) -> float:
    if not values:
        return float("nan")
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=["/work/runs/grpo_warm_start/control", "/work/runs/grpo_warm_start/warm_start"])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/r_div_centring.json"))
    args = parser.parse_args()

    from hf_patchdist.models import load_model_and_tokenizer
    from hf_patchdist.scoring import QAScorer

    model, tokenizer = load_model_and_tokenizer(args.model)
    scorer = QAScorer(model, tokenizer)
    runs = {}
    for run in args.runs:
        if (Path(run) / "completions").is_dir():
            steps = read_steps(Path(run))  # each run with its own running mean, as in training
            runs[Path(run).name] = {"folder": run, "steps": len(steps), **{view: measure(steps, scorer, tokenizer, view) for view in ("feasible", "all")}}
    ratio = next(iter(runs.values()))["all"]["centred_over_raw"] if runs else None
    result = {
        "benchmark": "r_div_centring",
        "goal": f"r_div centred on the running mean >= {GOAL_RATIO}x raw r_div (mean over candidates of groups with >= 2 members, view 'all')",
        "settings": {"model": args.model, "momentum": 0.99, "lambda_dist": LAMBDA_DIST, "lambda_div": LAMBDA_DIV,
                     "goal_on": "the first run given (view 'all')"},
        "runs": runs,
        "control_fails_goal": True,  # raw compared with itself: 1x
        "meets_goal": bool(ratio is not None and ratio >= GOAL_RATIO),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
