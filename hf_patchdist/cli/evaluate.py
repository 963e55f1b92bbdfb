"""`hf-patchdist evaluate`: downstream accuracy and forgetting against a base model.

`cmd_evaluate` and `_add_evaluate_parser` are the functions of the former `hf_patchdist/cli.py`, moved as they
were (only the relative import of the evaluation package gained a dot, `..evaluation`, now that the command
lives one package lower).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import _prepare_output


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation import EvaluationConfig, run_evaluation

    output = _prepare_output(args.output, args.overwrite)
    config = EvaluationConfig(
        batch_size=args.batch_size,
        generation_batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        kl_prompts=args.kl_prompts,
        kl_tokens=args.kl_tokens,
        seed=args.seed,
    )
    report = run_evaluation(
        args.model,
        base=args.base,
        tasks=[t.strip() for t in args.tasks.split(",") if t.strip()],
        limit=args.limit,
        data_dir=args.data_dir,
        output_dir=output,
        config=config,
        dtype=args.dtype,
    )
    print(Path(report["files"]["markdown"]).read_text())
    print(f"Wrote the report to {output}")
    return 0


def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("evaluate", help="Measure downstream accuracy and forgetting against a base model")
    evaluate.add_argument("--model", required=True, help="Model to evaluate (alias, folder or Hub id)")
    evaluate.add_argument("--base", default=None, help="The model it was fine-tuned from (enables forgetting and KL)")
    evaluate.add_argument("--tasks", default="gsm8k,arc_easy,hellaswag", help="Comma-separated: gsm8k, arc_easy, arc_challenge, hellaswag")
    evaluate.add_argument("--limit", type=int, default=None, help="Items per task")
    evaluate.add_argument("--data-dir", default=None, help="Local JSONL in the layout of ../shared/data (default: the Hub)")
    evaluate.add_argument("--output", required=True, help="Folder for results.json, results.md and the plot")
    evaluate.add_argument("--overwrite", action="store_true", help="Replace --output if it exists")
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--max-new-tokens", type=int, default=256)
    evaluate.add_argument("--kl-prompts", type=int, default=40)
    evaluate.add_argument("--kl-tokens", type=int, default=64)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--dtype", default="auto")
    evaluate.set_defaults(func=cmd_evaluate)
