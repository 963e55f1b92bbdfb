"""`hf-patchdist evaluate`: downstream accuracy and forgetting against a base model.

Built-in tasks (`--tasks`), the user's own task specs (`--tasks-file`) and lm-evaluation-harness tasks
(`--lm-eval-tasks`, optional engine) all enter one forgetting report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import _prepare_output


def _split_names(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation import EvaluationConfig, combine_tasks, load_task_file, run_evaluation
    from ..evaluation.lm_eval_harness import LM_EVAL_INSTALL_HINT, lm_eval_task_manager
    from ..import_utils import is_lm_eval_available

    # Check the tasks before anything is loaded or --output is replaced.
    lm_eval_tasks = _split_names(args.lm_eval_tasks)
    if args.lm_eval_include_path and not lm_eval_tasks:
        raise SystemExit("error: --lm-eval-include-path needs --lm-eval-tasks (the task names of its YAMLs).")
    if lm_eval_tasks and not is_lm_eval_available():
        raise SystemExit(f"error: --lm-eval-tasks needs EleutherAI's lm-evaluation-harness, which is not installed: {LM_EVAL_INSTALL_HINT}")
    try:
        user_tasks = load_task_file(args.tasks_file) if args.tasks_file else []
        tasks = combine_tasks(_split_names(args.tasks), user_tasks)
        if lm_eval_tasks:
            lm_eval_task_manager(lm_eval_tasks, args.lm_eval_include_path)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from error
    if not tasks and not lm_eval_tasks:
        raise SystemExit("error: nothing to evaluate: --tasks is empty and there is no --tasks-file or --lm-eval-tasks.")
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
        tasks=tasks,
        limit=args.limit,
        data_dir=args.data_dir,
        output_dir=output,
        config=config,
        dtype=args.dtype,
        lm_eval_tasks=lm_eval_tasks,
        lm_eval_include_path=args.lm_eval_include_path,
    )
    print(Path(report["files"]["markdown"]).read_text())
    print(f"Wrote the report to {output}")
    return 0


def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("evaluate", help="Measure downstream accuracy and forgetting against a base model")
    evaluate.add_argument("--model", required=True, help="Model to evaluate (alias, folder or Hub id)")
    evaluate.add_argument("--base", default=None, help="The model it was fine-tuned from (enables forgetting and KL)")
    evaluate.add_argument(
        "--tasks", default="gsm8k,arc_easy,hellaswag", help="Comma-separated built-in tasks: gsm8k, arc_easy, arc_challenge, hellaswag ('' for none)"
    )
    evaluate.add_argument(
        "--tasks-file", default=None, metavar="FILE", help="YAML or JSON list of your own tasks (name, kind, path, columns...), added to --tasks"
    )
    evaluate.add_argument(
        "--lm-eval-tasks", default=None, metavar="TASKS",
        help="Comma-separated lm-evaluation-harness tasks (e.g. arc_easy,piqa), run on the model and the base too; "
        "needs pip install 'hf-patchdist[lm-eval]'",
    )
    evaluate.add_argument("--lm-eval-include-path", default=None, metavar="DIR", help="Folder with local lm-eval task YAMLs")
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
