"""`hf-patchdist rewrite`: patch a data set with Generate-Verify-Fallback and save it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..models import DEFAULT_MODEL
from .common import _add_data_arguments, _add_rewriter_arguments, _prepare_output, build_rewriter


def cmd_rewrite(args: argparse.Namespace) -> int:
    from ..data import load_any_dataset
    from ..patch_statistics import PatchStatistics

    output = _prepare_output(args.output, args.overwrite)
    dataset = load_any_dataset(args.dataset, split=args.split, config_name=args.dataset_config, limit=args.limit)
    rewriter = build_rewriter(args, args.model)
    if args.save_rejected:
        rewriter.config.keep_rejected = True
    rewriter.detect(dataset.column_names, sample=dataset[0] if len(dataset) else None)  # fail fast on bad columns
    print(f"Rewriting {len(dataset)} rows with {args.rewriter or args.model} ...", file=sys.stderr)
    from transformers import set_seed

    # Best-of-K samples: without a seed two runs of the same command kept different rewrites, and make demo's count
    # of rewritten rows changed from run to run.
    set_seed(args.seed)
    patched = rewriter.rewrite(dataset, load_from_cache_file=False)
    patched.save_to_disk(str(output))
    stats = PatchStatistics.from_dataset(patched)
    (output / "patch_statistics.json").write_text(json.dumps(stats.to_dict(), indent=2) + "\n")
    print(stats.summary())
    print(describe_one_rewrite(dataset, patched, rewriter))
    print(f"Saved the patched data set to {output}")
    if args.save_rejected:
        print("The rejected candidates, with the gate's reason and detail, are in its column patch_rejected")
    if args.push_to_hub:
        from ..hub import push_patched_dataset

        url = push_patched_dataset(patched, args.push_to_hub, rewriter=rewriter)
        print(f"Pushed to {url}")
    return 0


def describe_one_rewrite(dataset: Any, patched: Any, rewriter: Any) -> str:
    """One accepted rewrite next to the expert answer it replaced, with both pi_0 NLLs: what patching did.

    The one with the median NLL drop among the accepted rewrites, so that it is a typical one, neither the best nor
    the worst.
    """
    from ..formats import read_example

    sources = patched["patch_source"]
    if "rewrite" not in sources:
        return "No row was rewritten: every target kept its expert answer (see the fallback reasons above)."
    drops = patched["patch_nll_original"], patched["patch_nll_kept"]
    accepted = sorted((i for i, source in enumerate(sources) if source == "rewrite"), key=lambda i: drops[0][i] - drops[1][i])
    index = accepted[len(accepted) // 2]
    spec = rewriter.detect(dataset.column_names, sample=dataset[index])
    row = patched[index]
    return (
        f"A typical accepted rewrite (row {index}, the median NLL drop of {len(accepted)}; pi_0 NLL {row['patch_nll_original']:.3f} -> {row['patch_nll_kept']:.3f}, "
        "lower is closer to the model's own words):\n"
        f"--- expert answer ---\n{read_example(dataset[index], spec).answer}\n"
        f"--- rewrite ---\n{read_example(row, spec).answer}\n---"
    )


def _add_rewrite_parser(sub: argparse._SubParsersAction) -> None:
    rewrite = sub.add_parser("rewrite", help="Patch a data set with Generate-Verify-Fallback and save it")
    _add_data_arguments(rewrite)
    _add_rewriter_arguments(rewrite)
    rewrite.add_argument("--model", default=DEFAULT_MODEL, help=f"Base model for prompted rewriting (default {DEFAULT_MODEL})")
    rewrite.add_argument("--output", required=True, help="Folder for the patched data set (save_to_disk)")
    rewrite.add_argument("--overwrite", action="store_true", help="Replace --output if it exists")
    rewrite.add_argument(
        "--save-rejected",
        action="store_true",
        help="Keep each row's rejected candidates with the gate's reason and detail (column patch_rejected), to audit the gate",
    )
    rewrite.add_argument("--seed", type=int, default=42, help="Seed of the sampled candidates (transformers.set_seed; default 42, as TRL's)")
    rewrite.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="Also push the patched data set with its card")
    rewrite.set_defaults(func=cmd_rewrite)
