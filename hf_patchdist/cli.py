"""The ``hf-patchdist`` command line."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from .models import DEFAULT_MODEL


def _prepare_output(path: str, overwrite: bool) -> Path:
    output = Path(path)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        if not overwrite:
            raise SystemExit(f"error: {output} exists and is not empty; pass --overwrite to replace it.")
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    return output


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=None, help="Hub id, local JSONL/JSON/Parquet/CSV file or saved data set; default: the built-in arithmetic set")
    parser.add_argument("--dataset-config", default=None, help="Hub data set configuration name (e.g. 'main' for openai/gsm8k)")
    parser.add_argument("--split", default=None, help="Split, with slicing (e.g. 'train[800:832]'); default 'train'")
    parser.add_argument("--limit", type=int, default=None, help="Use only the first N rows")
    parser.add_argument("--question-column", default=None, help="Plain column with the question (default 'question' when present)")
    parser.add_argument("--answer-column", default=None, help="Plain column with the expert answer (default 'answer' when present)")


def _add_rewriter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rewriter", default=None, help="Trained rewriter: local folder or Hub id (default: prompted rewriting on --model)")
    parser.add_argument("--num-candidates", type=int, default=None, help="Candidates per example (default 1, greedy)")
    parser.add_argument("--rewrite-batch-size", type=int, default=16, help="Examples per generation batch")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="Token limit per rewrite")
    parser.add_argument("--dtype", default="auto", help="'auto' (bfloat16 where supported), 'float32', 'bfloat16'")


def build_rewriter(args: argparse.Namespace, model: str | None = None):
    """A Rewriter from the CLI options (shared by `rewrite` and `sft`)."""
    from .rewriter import Rewriter

    common = dict(
        num_candidates=args.num_candidates,
        batch_size=args.rewrite_batch_size,
        question_column=args.question_column,
        answer_column=args.answer_column,
        dtype=args.dtype,
    )
    if args.rewriter:
        rewriter = Rewriter.from_pretrained(args.rewriter, **common)
    else:
        rewriter = Rewriter(model or DEFAULT_MODEL, **common)
    if args.max_new_tokens is not None:
        rewriter.config.generation = {**rewriter.config.generation, "max_new_tokens": args.max_new_tokens}
    return rewriter


def cmd_rewrite(args: argparse.Namespace) -> int:
    from .data import load_any_dataset
    from .patch_statistics import PatchStatistics

    output = _prepare_output(args.output, args.overwrite)
    dataset = load_any_dataset(args.dataset, split=args.split, config_name=args.dataset_config, limit=args.limit)
    rewriter = build_rewriter(args, args.model)
    rewriter.detect(dataset.column_names, sample=dataset[0] if len(dataset) else None)  # fail fast on bad columns
    print(f"Rewriting {len(dataset)} rows with {args.rewriter or args.model} ...", file=sys.stderr)
    patched = rewriter.rewrite(dataset, load_from_cache_file=False)
    patched.save_to_disk(str(output))
    stats = PatchStatistics.from_dataset(patched)
    (output / "patch_statistics.json").write_text(json.dumps(stats.to_dict(), indent=2) + "\n")
    print(stats.summary())
    print(f"Saved the patched data set to {output}")
    if args.push_to_hub:
        from .hub import push_patched_dataset

        url = push_patched_dataset(patched, args.push_to_hub, rewriter=rewriter)
        print(f"Pushed to {url}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """Push an existing rewriter folder or saved patched data set, whichever DIR holds."""
    from .hub import push_patched_dataset, push_rewriter
    from .rewriter.config import REWRITER_CONFIG_NAME

    folder = Path(args.dir)
    if not folder.is_dir():
        raise SystemExit(f"error: {folder} is not a folder.")
    common = dict(private=args.private or None, token=args.token, commit_message=args.commit_message, revision=args.revision)
    if (folder / REWRITER_CONFIG_NAME).is_file():
        # Uploaded as it is: no model is loaded to push a folder.
        url = push_rewriter(folder, args.repo_id, **common)
        kind = "rewriter"
    elif any((folder / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json")):
        import datasets

        dataset = datasets.load_from_disk(str(folder))
        url = push_patched_dataset(dataset, args.repo_id, rewriter=args.rewriter, split=args.split, **common)
        kind = "patched data set"
    else:
        raise SystemExit(
            f"error: {folder} is neither a rewriter folder ({REWRITER_CONFIG_NAME}) nor a data set saved with "
            "save_to_disk (e.g. the --output of `hf-patchdist rewrite`)."
        )
    print(f"Pushed the {kind} in {folder} to {url}")
    return 0


def _add_push_parser(sub: argparse._SubParsersAction) -> None:
    push = sub.add_parser(
        "push",
        help="Push a rewriter folder or a saved patched data set to the Hub, with its card",
        description="Push DIR to the Hub: a rewriter folder (rewriter_config.json + adapter) as a model repo, or a "
        "patched data set saved with save_to_disk (such as the --output of `rewrite`) as a data set repo.",
    )
    push.add_argument("dir", metavar="DIR", help="Rewriter folder or saved patched data set")
    push.add_argument("repo_id", metavar="REPO_ID", help="Hub repo id, e.g. your-name/gsm8k-rewriter")
    push.add_argument("--private", action="store_true", help="Create the repo private")
    push.add_argument("--revision", default=None, help="Branch to push to (created from main when new)")
    push.add_argument("--commit-message", default=None, help="Commit title")
    push.add_argument("--token", default=None, help="Hub token (default: `hf auth login` / HF_TOKEN)")
    push.add_argument("--rewriter", default=None, help="Data sets: Hub id of the rewriter that made it, linked from the card")
    push.add_argument("--split", default=None, help="Data sets: split name for a single saved split (default 'train')")
    push.set_defaults(func=cmd_push)


def cmd_sft(args: argparse.Namespace) -> int:
    """Patch the training set (cached), then fine-tune with DistributionPatchTrainer and save model and card."""
    import torch

    from .data import load_any_dataset
    from .models import default_dtype
    from .trainers import DistributionPatchTrainer, DistributionPatchConfig

    output = _prepare_output(args.output, args.overwrite)
    dataset = load_any_dataset(args.dataset, split=args.split, config_name=args.dataset_config, limit=args.limit)
    config = DistributionPatchConfig(
        output_dir=str(output),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps if args.max_steps is not None else -1,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_length=args.max_length,
        logging_steps=args.logging_steps,
        save_strategy="no",  # the final model is saved below; checkpoints are a TRL script's business
        seed=args.seed,
        # bf16 mixed precision where the hardware computes it (TRL's default would fail on a CPU without use_cpu).
        bf16=not args.no_bf16 and default_dtype() == torch.bfloat16,
        use_cpu=not torch.cuda.is_available(),
        report_to=args.report_to,
        patch_cache_dir=args.patch_cache_dir,
        patch_use_cache=not args.no_patch_cache,
    )
    peft_config = None
    if args.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha or 2 * args.lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
    print(f"Patching {len(dataset)} rows with {args.rewriter or 'prompted rewriting on ' + args.model}, then SFT of {args.model} ...", file=sys.stderr)
    # The rewriter is built inline: no reference outlives the patching, so its model copy is freed before training.
    trainer = DistributionPatchTrainer(
        model=args.model, args=config, train_dataset=dataset, rewriter=build_rewriter(args, args.model), peft_config=peft_config
    )
    print(trainer.patch_statistics.summary())
    trainer.train()
    trainer.save_model(str(output))
    trainer.create_model_card(model_name=output.name)
    (output / "patch_statistics.json").write_text(json.dumps(trainer.patch_statistics.to_dict(), indent=2) + "\n")
    print(f"Saved the fine-tuned model and its card to {output}")
    return 0


def _add_sft_parser(sub: argparse._SubParsersAction) -> None:
    sft = sub.add_parser(
        "sft",
        help="Patch a training set (cached) and fine-tune on it with DistributionPatchTrainer",
        description="Stage II: patch the training targets with Generate-Verify-Fallback (cached on disk), then SFT "
        "with TRL. Plain question/answer sets are trained as conversational prompt-completion rows.",
    )
    _add_data_arguments(sft)
    _add_rewriter_arguments(sft)
    sft.add_argument("--model", default=DEFAULT_MODEL, help=f"Model to fine-tune, also the prompted rewriter without --rewriter (default {DEFAULT_MODEL})")
    sft.add_argument("--output", required=True, help="Folder for the fine-tuned model, its card and patch_statistics.json")
    sft.add_argument("--overwrite", action="store_true", help="Replace --output if it exists")
    sft.add_argument("--epochs", type=float, default=1.0, help="Training epochs (default 1)")
    sft.add_argument("--max-steps", type=int, default=None, help="Stop after this many optimizer steps (overrides --epochs)")
    sft.add_argument("--learning-rate", type=float, default=2e-5, help="Learning rate (default 2e-5)")
    sft.add_argument("--batch-size", type=int, default=8, help="Training examples per device and step (default 8)")
    sft.add_argument("--gradient-accumulation-steps", type=int, default=1, help="Steps accumulated per update (default 1)")
    sft.add_argument("--max-length", type=int, default=1024, help="Token limit per training sequence (default 1024)")
    sft.add_argument("--logging-steps", type=float, default=10, help="Log every N steps (default 10)")
    sft.add_argument("--seed", type=int, default=42, help="Random seed (default 42)")
    sft.add_argument("--lora-r", type=int, default=0, help="Train a LoRA adapter of this rank on all linear layers (default 0: full fine-tuning)")
    sft.add_argument("--lora-alpha", type=int, default=None, help="LoRA alpha (default 2 * --lora-r)")
    sft.add_argument("--no-bf16", action="store_true", help="Train in float32 instead of bfloat16 mixed precision (the default where the hardware supports bf16)")
    sft.add_argument("--report-to", default="none", help="Trackers for the training logs (default 'none')")
    sft.add_argument("--patch-cache-dir", default=None, help="Cache of patched data sets (default <HF_DATASETS_CACHE>/hf_patchdist)")
    sft.add_argument("--no-patch-cache", action="store_true", help="Patch again even when a cached patched set exists")
    sft.set_defaults(func=cmd_sft)


def cmd_train_rewriter(args: argparse.Namespace) -> int:
    from .data import load_any_dataset
    from .trainers import RewriterTrainer, RewriterGRPOConfig

    output = Path(args.output)
    if output.exists() and any(output.iterdir()) and not (args.resume or args.overwrite):
        raise SystemExit(f"error: {output} exists and is not empty; pass --resume to continue its last checkpoint or --overwrite.")
    dataset = load_any_dataset(args.dataset, split=args.split, config_name=args.dataset_config, limit=args.limit)
    config = RewriterGRPOConfig(
        str(output),
        max_steps=args.max_steps,
        num_train_epochs=args.num_train_epochs,
        per_device_train_batch_size=args.prompts_per_step * args.num_generations,
        num_generations=args.num_generations,
        learning_rate=args.learning_rate,
        beta=args.beta,
        temperature=args.temperature,
        max_completion_length=args.max_completion_length,
        lambda_dist=args.lambda_dist,
        lambda_div=args.lambda_div,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        judge_model=args.judge_model,
        question_column=args.question_column,
        answer_column=args.answer_column,
        save_steps=args.save_steps,
        save_total_limit=2,
        gradient_checkpointing=False,
        report_to="none",
        seed=args.seed,
        push_to_hub=args.push_to_hub is not None,
        hub_model_id=args.push_to_hub,
    )
    trainer = RewriterTrainer(model=args.model, args=config, train_dataset=dataset)
    trainer.train(resume_from_checkpoint=True if args.resume else None)
    print(json.dumps(trainer.training_summary(), indent=2))
    print(f"Saved the rewriter to {output} (load it with Rewriter.from_pretrained({str(output)!r}))")
    return 0


def _add_train_rewriter_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train-rewriter", help="Train a rewriter (LoRA) with GRPO and save it (Stage I)")
    _add_data_arguments(train)
    train.add_argument("--model", default=DEFAULT_MODEL, help=f"Backbone (default {DEFAULT_MODEL})")
    train.add_argument("--output", required=True, help="Folder for checkpoints and the final rewriter")
    train.add_argument("--max-steps", type=int, default=-1, help="GRPO steps (default: run --num-train-epochs)")
    train.add_argument("--num-train-epochs", type=float, default=2.0)
    train.add_argument("--prompts-per-step", type=int, default=1, help="Prompts (groups) per step and device")
    train.add_argument("--num-generations", type=int, default=4, help="Group size K")
    train.add_argument("--learning-rate", type=float, default=3e-6)
    train.add_argument("--beta", type=float, default=0.001)
    train.add_argument("--temperature", type=float, default=1.0)
    train.add_argument("--max-completion-length", type=int, default=256)
    train.add_argument("--lambda-dist", type=float, default=0.35)
    train.add_argument("--lambda-div", type=float, default=0.5)
    train.add_argument("--lora-r", type=int, default=64)
    train.add_argument("--lora-alpha", type=int, default=32)
    train.add_argument("--judge-model", default=None, help="'pi0' or a model id: add the LLM judge to the gate")
    train.add_argument("--save-steps", type=int, default=10)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--resume", action="store_true", help="Continue from the last checkpoint in --output")
    train.add_argument("--overwrite", action="store_true", help="Allow a non-empty --output without --resume")
    train.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="Push the rewriter at the end")
    train.set_defaults(func=cmd_train_rewriter)


def _split_names(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import EvaluationConfig, combine_tasks, load_task_file, run_evaluation
    from .evaluation.lm_eval_harness import LM_EVAL_INSTALL_HINT, lm_eval_task_manager
    from .import_utils import is_lm_eval_available

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-patchdist", description="Rewrite SFT targets into the model's own words so fine-tuning forgets less.")
    sub = parser.add_subparsers(dest="command", required=True)

    rewrite = sub.add_parser("rewrite", help="Patch a data set with Generate-Verify-Fallback and save it")
    _add_data_arguments(rewrite)
    _add_rewriter_arguments(rewrite)
    rewrite.add_argument("--model", default=DEFAULT_MODEL, help=f"Base model for prompted rewriting (default {DEFAULT_MODEL})")
    rewrite.add_argument("--output", required=True, help="Folder for the patched data set (save_to_disk)")
    rewrite.add_argument("--overwrite", action="store_true", help="Replace --output if it exists")
    rewrite.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="Also push the patched data set with its card")
    rewrite.set_defaults(func=cmd_rewrite)

    _add_train_rewriter_parser(sub)
    _add_evaluate_parser(sub)
    _add_push_parser(sub)
    _add_sft_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
