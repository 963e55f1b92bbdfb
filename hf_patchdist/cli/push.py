"""`hf-patchdist push`: push a rewriter folder or a saved patched data set to the Hub, with its card."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_push(args: argparse.Namespace) -> int:
    """Push an existing rewriter folder or saved patched data set, whichever DIR holds."""
    from ..hub import push_patched_dataset, push_rewriter
    from ..rewriter.config import REWRITER_CONFIG_NAME

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
