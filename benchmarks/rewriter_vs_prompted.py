"""The GRPO-trained rewriter against the prompted Rewriter (same model, no adapter).

On GSM8K ``train[800:1000]`` (the project's rewriter-evaluation rows, used neither for SFT nor for
GRPO) both rewriters run Generate-Verify-Fallback with the same gate, prompt and generation
settings; reported per rewriter: acceptance rate, accepted NLL (mean pi_0 NLL of the accepted
rewrites), target NLL (mean pi_0 NLL of the kept targets, fallbacks included) and the fallback
reasons, plus ``nll_ratio`` = accepted NLL of the RL rewriter over the prompted one's (goal <= 0.85
with acceptance no lower). pi_0 is the same backbone in both cases, so the NLLs are comparable.

``goals`` records each part of the goal: ``nll_ratio`` (``nll_ratio <= 0.85``; false when either
rewriter accepted nothing) and ``acceptance_no_lower`` (``acceptance_rl >= acceptance_prompted``);
``meets_goal`` is true only when both are.

Prints one JSON object on its last line and writes it to ``benchmarks/results/rewriter_vs_prompted.json``;
``--examples`` also writes a few accepted rewrites of each rewriter for the docs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from datasets import load_dataset

from hf_patchdist.rewriter import Rewriter
from hf_patchdist.patch_statistics import PatchStatistics

ROOT = Path(__file__).resolve().parents[1]
GOAL_NLL_RATIO = 0.85


def goal_check(nll_ratio: float | None, acceptance_rl: float, acceptance_prompted: float) -> dict:
    """The docstring's goal, part by part, and whether all parts hold."""
    goals = {
        "nll_ratio": nll_ratio is not None and nll_ratio <= GOAL_NLL_RATIO,
        "acceptance_no_lower": acceptance_rl >= acceptance_prompted,
    }
    return {"goal_nll_ratio": GOAL_NLL_RATIO, "goals": goals, "meets_goal": all(goals.values())}


def run(rewriter: Rewriter, dataset, batch_size: int) -> tuple[dict, list[dict], float]:
    start = time.perf_counter()
    patched = dataset.map(rewriter, batched=True, batch_size=batch_size, load_from_cache_file=False, desc="Rewriting")
    seconds = time.perf_counter() - start
    stats = PatchStatistics.from_dataset(patched)
    accepted = [row for row in patched if row["patch_source"] == "rewrite"]
    return stats.to_dict(), accepted, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/gsm8k/train.jsonl"))
    parser.add_argument("--split", default="train[800:1000]")
    parser.add_argument("--rewriter", default=str(ROOT / "examples/rewriters/gsm8k-smollm2-135m"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/rewriter_vs_prompted.json"))
    parser.add_argument("--examples", default=str(ROOT / "benchmarks/results/rewriter_vs_prompted_examples.json"))
    args = parser.parse_args()

    dataset = load_dataset("json", data_files=args.data, split=args.split)
    rl = Rewriter.from_pretrained(args.rewriter, batch_size=args.batch_size, show_progress=False)
    # The prompted baseline: the same base model, prompt, gate and generation settings, no adapter.
    prompted = Rewriter(rl.config.base_model, config=rl.config, batch_size=args.batch_size, show_progress=False)
    prompted.config.has_adapter = False

    prompted_stats, prompted_accepted, prompted_seconds = run(prompted, dataset, args.batch_size)
    rl_stats, rl_accepted, rl_seconds = run(rl, dataset, args.batch_size)

    def ratio(a, b):
        return a / b if a is not None and b else None

    result = {
        "rows": len(dataset),
        "split": args.split,
        "rewriter": str(Path(args.rewriter).resolve().relative_to(ROOT)) if Path(args.rewriter).resolve().is_relative_to(ROOT) else args.rewriter,
        "base_model": rl.config.base_model,
        "nll_ratio": ratio(rl_stats["accepted_nll"], prompted_stats["accepted_nll"]),
        "target_nll_ratio": ratio(rl_stats["target_nll"], prompted_stats["target_nll"]),
        "acceptance_rl": rl_stats["acceptance_rate"],
        "acceptance_prompted": prompted_stats["acceptance_rate"],
        "accepted_nll_rl": rl_stats["accepted_nll"],
        "accepted_nll_prompted": prompted_stats["accepted_nll"],
        "target_nll_rl": rl_stats["target_nll"],
        "target_nll_prompted": prompted_stats["target_nll"],
        "original_nll": prompted_stats["original_nll"],
        "fallback_reasons_rl": rl_stats["fallback_reasons"],
        "fallback_reasons_prompted": prompted_stats["fallback_reasons"],
        "mean_accepted_words_rl": sum(len(r["answer"].split()) for r in rl_accepted) / max(len(rl_accepted), 1),
        "mean_accepted_words_prompted": sum(len(r["answer"].split()) for r in prompted_accepted) / max(len(prompted_accepted), 1),
        "seconds": {"prompted": prompted_seconds, "rl": rl_seconds},
    }
    result.update(goal_check(result["nll_ratio"], result["acceptance_rl"], result["acceptance_prompted"]))
    Path(args.examples).write_text(
        json.dumps({"prompted": prompted_accepted, "rl": rl_accepted}, indent=2, ensure_ascii=False) + "\n"
    )
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
