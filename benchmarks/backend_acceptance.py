"""Does the default generation backend change what Stage II accepts? Prompted Rewriter, greedy, GSM8K ``train[800:1000]``.

Issue 13 asks that the acceptance rate of the prompted Rewriter does not drop when the default backend changes. One
run, same rows, same gate, one greedy candidate per row: the default backend (:func:`~hf_patchdist.generation.registry.
default_backend`: OpenVINO bf16 on a CPU with native bf16) against the transformers backend (the default before).
Reported per backend: acceptance, target and accepted NLL (pi_0 is scored by transformers in both), seconds, and the
rows whose verdict differs. Goal: the default's acceptance >= the transformers backend's minus one standard error of
the difference (a paired count: rows accepted by one and not the other); the control, a Rewriter whose every
candidate is cut to 8 tokens, fails it.

Prints one JSON object on its last line and writes it to ``benchmarks/results/backend_acceptance.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

from datasets import load_dataset

from hf_patchdist.generation.registry import default_backend
from hf_patchdist.patch_statistics import PatchStatistics
from hf_patchdist.rewriter import Rewriter

ROOT = Path(__file__).resolve().parents[1]


def run(rewriter: Rewriter, dataset, batch_size: int) -> tuple[dict, list[str], float]:
    start = time.perf_counter()
    patched = dataset.map(rewriter, batched=True, batch_size=batch_size, load_from_cache_file=False, desc="Rewriting")
    seconds = time.perf_counter() - start
    return PatchStatistics.from_dataset(patched).to_dict(), list(patched["patch_source"]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/gsm8k/train.jsonl"))
    parser.add_argument("--split", default="train[800:1000]")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/backend_acceptance.json"))
    args = parser.parse_args()

    dataset = load_dataset("json", data_files=args.data, split=args.split)
    name, options = default_backend(args.model, "cpu", {})
    runs = {}
    for label, backend, backend_options, limit in (
        ("default", name, options, None),
        ("transformers", "transformers", {}, None),
        ("control_8_tokens", "transformers", {}, 8),
    ):
        rewriter = Rewriter(args.model, backend=backend, backend_options=backend_options, batch_size=args.batch_size, show_progress=False)
        if limit is not None:
            rewriter.config.generation = {**rewriter.config.generation, "max_new_tokens": limit}
        stats, sources, seconds = run(rewriter, dataset, args.batch_size)
        runs[label] = {"backend": backend, "options": backend_options, "stats": stats, "sources": sources, "seconds": seconds}

    def accepted(label: str) -> list[bool]:
        return [s == "rewrite" for s in runs[label]["sources"]]

    def check(label: str) -> dict:
        a, b = accepted(label), accepted("transformers")
        only_a, only_b = sum(x and not y for x, y in zip(a, b)), sum(y and not x for x, y in zip(a, b))
        n = len(a)
        # Paired difference of two proportions: its standard error from the discordant rows.
        se = math.sqrt(only_a + only_b - (only_a - only_b) ** 2 / n) / n
        diff = (sum(a) - sum(b)) / n
        return {"acceptance": sum(a) / n, "difference": diff, "standard_error": se, "only_this": only_a, "only_transformers": only_b,
                "meets_goal": diff >= -se}

    result = {
        "rows": len(dataset), "split": args.split, "model": args.model, "default_backend": {"name": name, "options": options},
        "runs": {label: {k: v for k, v in r.items() if k != "sources"} for label, r in runs.items()},
        "default_vs_transformers": check("default"),
        "control_vs_transformers": check("control_8_tokens"),
        "load_average_end": os.getloadavg(),
    }
    result["meets_goal"] = result["default_vs_transformers"]["meets_goal"]
    result["control_fails_goal"] = not result["control_vs_transformers"]["meets_goal"]
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
