"""How much does the patch cache save? Time two constructions of DistributionPatchTrainer on the same inputs.

The first construction patches the training set (generation + pi_0 scoring with the real default model); the
second, with the same data set, rewriter and options, must read the cached patched set instead. With
``--fresh-process`` a third construction runs in a new Python process, as a second run of a training script would.
Model loading is not timed: it is the same with or without patching.

Goal (``meets_goal``; each part in ``goals``): the second construction takes at most 5% of the first, reports
``from_cache``, makes no generate call and yields the same training rows (token ids) as the first; with
``--fresh-process`` the third one too (time, ``from_cache``, no generate call). Control, in the same run: the first
construction, on a cold cache, must report neither ``from_cache`` nor zero generate calls
(``goals["control_first_not_from_cache"]``), or the checks above could not tell a hit from a miss.

Prints one JSON object on its last line and writes the same object to ``benchmarks/results/patch_cache.json``.

    python benchmarks/patch_cache.py                      # 32 GSM8K rows, train[800:832], the embedded model
    python benchmarks/patch_cache.py --fresh-process --data path/to/gsm8k/train.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
# Run as a script from a checkout: import the package of this checkout.
sys.path.insert(0, str(REPO))

DEFAULT_DATA = "/work/shared/data/gsm8k/train.jsonl"
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "patch_cache.json"
GOAL_RATIO = 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help=f"GSM8K JSONL file (default {DEFAULT_DATA})")
    parser.add_argument("--rows", default="800:832", help="Row slice of the file (default 800:832: rewriter evaluation rows)")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="Model to train; the prompted rewriter runs on it")
    parser.add_argument("--dtype", default="auto", help="Model dtype (default auto: bfloat16 where supported)")
    parser.add_argument("--batch-size", type=int, default=16, help="Rewriting batch size (patch_batch_size)")
    parser.add_argument("--cache-dir", default=None, help="Patch cache folder (default: a new temporary folder, so the first construction is cold)")
    parser.add_argument("--fresh-process", action="store_true", help="Also time a construction in a new Python process")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help=f"JSON result file (default {DEFAULT_OUTPUT.relative_to(REPO)})")
    parser.add_argument("--construct-once", action="store_true", help=argparse.SUPPRESS)  # the fresh-process child
    return parser.parse_args(argv)


class GenerateCounter:
    """Counts calls of TransformersBackend.generate: a cache hit must make none."""

    def __init__(self) -> None:
        from hf_patchdist.generation import TransformersBackend

        self.calls = 0
        original = TransformersBackend.generate

        def counting(backend, *args, **kwargs):
            self.calls += 1
            return original(backend, *args, **kwargs)

        TransformersBackend.generate = counting


def construct(args: argparse.Namespace, model, tokenizer, dataset, output_dir: str):
    from hf_patchdist.trainers import DistributionPatchTrainer, DistributionPatchConfig

    config = DistributionPatchConfig(
        output_dir=output_dir,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        bf16=False,  # no training step is taken; mixed precision on a CPU would also need use_cpu=True
        patch_batch_size=args.batch_size,
        patch_cache_dir=args.cache_dir,
    )
    start = time.perf_counter()
    trainer = DistributionPatchTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    return trainer, time.perf_counter() - start


def load_inputs(args: argparse.Namespace):
    import datasets

    from hf_patchdist.models import load_model_and_tokenizer

    if not Path(args.data).is_file():
        raise SystemExit(f"error: {args.data} not found; pass --data with a GSM8K JSONL file (question/answer rows).")
    dataset = datasets.load_dataset("json", data_files=args.data, split=f"train[{args.rows}]")
    model, tokenizer = load_model_and_tokenizer(args.model, dtype=args.dtype, device="cpu")
    return model, tokenizer, dataset


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    counter = GenerateCounter()
    model, tokenizer, dataset = load_inputs(args)
    work = tempfile.TemporaryDirectory(prefix="patch-cache-bench-")
    if args.cache_dir is None:
        args.cache_dir = os.path.join(work.name, "cache")

    if args.construct_once:  # child of --fresh-process: one construction, expected to hit the parent's cache
        trainer, seconds = construct(args, model, tokenizer, dataset, os.path.join(work.name, "out"))
        result = {"construction_s": seconds, "generate_calls": counter.calls, "from_cache": trainer.patch_result.from_cache}
        print(json.dumps(result))
        return result

    first, first_s = construct(args, model, tokenizer, dataset, os.path.join(work.name, "out1"))
    calls_first = counter.calls
    second, second_s = construct(args, model, tokenizer, dataset, os.path.join(work.name, "out2"))
    calls_second = counter.calls - calls_first
    goals = {
        # Control: the first construction must not look like a cache hit, or these checks could not tell one.
        "control_first_not_from_cache": not first.patch_result.from_cache and calls_first > 0,
        "ratio": second_s / first_s <= GOAL_RATIO,
        "second_from_cache": bool(second.patch_result.from_cache),
        "no_generate_calls_second": calls_second == 0,
        "same_training_rows": first.train_dataset["input_ids"] == second.train_dataset["input_ids"],
    }
    result: dict = {
        "benchmark": "patch_cache",
        "model": args.model,
        "dtype": str(model.dtype).removeprefix("torch."),
        "data": args.data,
        "rows": len(dataset),
        "row_slice": args.rows,
        "rewriter": "prompted (rewriter=None: the model being trained)",
        "patch_batch_size": args.batch_size,
        "first_construction_s": round(first_s, 3),
        "second_construction_s": round(second_s, 3),
        "ratio": round(second_s / first_s, 4),
        "goal_ratio": GOAL_RATIO,
        "meets_goal": all(goals.values()),  # updated below with the fresh-process checks
        "goals": goals,
        "first_from_cache": first.patch_result.from_cache,
        "generate_calls_first": calls_first,
        "generate_calls_second": calls_second,
        "second_from_cache": goals["second_from_cache"],
        "same_training_rows": goals["same_training_rows"],
        "patch_statistics": first.patch_statistics.to_dict(),
    }
    if args.fresh_process:
        command = [
            sys.executable, str(Path(__file__).resolve()), "--construct-once", "--data", args.data, "--rows", args.rows,
            "--model", args.model, "--dtype", args.dtype, "--batch-size", str(args.batch_size), "--cache-dir", args.cache_dir,
        ]
        child = subprocess.run(command, capture_output=True, text=True, check=True)
        fresh = json.loads(child.stdout.strip().splitlines()[-1])
        result.update(
            fresh_process_construction_s=round(fresh["construction_s"], 3),
            fresh_process_ratio=round(fresh["construction_s"] / first_s, 4),
            fresh_process_generate_calls=fresh["generate_calls"],
            fresh_process_from_cache=fresh["from_cache"],
        )
        goals["fresh_process_ratio"] = fresh["construction_s"] / first_s <= GOAL_RATIO
        goals["fresh_process_from_cache"] = bool(fresh["from_cache"])
        goals["fresh_process_no_generate_calls"] = fresh["generate_calls"] == 0
        result["meets_goal"] = all(goals.values())
    result.update(
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads",
        date=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    work.cleanup()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
