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
    from .statistics import PatchStatistics

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
