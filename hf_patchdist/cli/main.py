"""The top-level parser of ``hf-patchdist``, as TRL's ``trl`` command builds its own.

A plain argparse parser with one subcommand per job. `rewrite`, `push` and `evaluate` have their flags here;
`sft` and `train-rewriter` are registered without options: their `TrlParser` (every field of the training
config, TRL's model options, a YAML file through `--config`) is built from the arguments after the command name
when the command runs. So `hf-patchdist --help` imports neither torch nor TRL, and `hf-patchdist sft --help`
loads the SFT config only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .evaluate import _add_evaluate_parser
from .push import _add_push_parser
from .rewrite import _add_rewrite_parser
from .sft import add_sft_command
from .train_rewriter import add_train_rewriter_command


TRAINING_COMMANDS = ("sft", "train-rewriter")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-patchdist", description="Rewrite SFT targets into the model's own words so fine-tuning forgets less.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_rewrite_parser(sub)
    add_train_rewriter_command(sub)
    _add_evaluate_parser(sub)
    _add_push_parser(sub)
    add_sft_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in TRAINING_COMMANDS:
        # As TRL's CLI: the command's own parser reads everything after the command name.
        after = argv[argv.index(args.command) + 1 :]
        if args.command == "sft":
            from .sft import run_sft

            return int(run_sft(after) or 0)
        from .train_rewriter import run_train_rewriter

        return int(run_train_rewriter(after) or 0)
    if rest:
        parser.error("unrecognized arguments: " + " ".join(rest))
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
