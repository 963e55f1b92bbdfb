"""TRL's `TrlParser` for the training commands, with defaults of the command and a last look before the configs.

Imported only by a training command that runs (it imports TRL): `hf-patchdist --help` stays light.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from trl import TrlParser

from .legacy import old_flags_help, translate_argv


CONFIG_HELP = (
    "YAML file of `field: value` pairs for any option below (and an optional `env:` mapping of environment "
    "variables). Values given on the command line win over the file."
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help (as TRL's), descriptions and epilog as written."""


class PatchParser(TrlParser):
    """A `TrlParser` (YAML through `--config FILE`, every dataclass field as `--field_name`) with three additions.

    - `defaults`: the command's own defaults, set before the YAML is read, so the YAML and then the command line
      win over them (e.g. `save_strategy="no"` for `sft`).
    - `resolve(namespace, parser)`: runs on the parsed values before the dataclasses are built, for options that
      set others (`prompts_per_step`) or must be given (`output_dir`); the configs' `__post_init__` run once, on the
      final values.
    - The former flags of the command are translated (:func:`~hf_patchdist.cli.legacy.translate_argv`), and
      `--config=FILE` is accepted besides TRL's `--config FILE`.
    """

    def __init__(
        self,
        dataclass_types: Iterable[Any],
        *,
        command: str,
        defaults: dict[str, Any] | None = None,
        resolve: Callable[[argparse.Namespace, PatchParser], None] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)  # `--model` must not silently mean `--model_revision`
        kwargs.setdefault("epilog", old_flags_help(command))
        super().__init__(dataclass_types, **kwargs)
        self.command = command
        self.resolve = resolve
        # TrlParser takes `--config FILE` out of the arguments before parsing; this entry is for --help.
        self.add_argument("--config", metavar="FILE.yaml", default=None, help=CONFIG_HELP)
        known = {action.dest for action in self._actions}
        unknown = set(defaults or {}) - known
        if unknown:
            raise ValueError(f"defaults for unknown options: {sorted(unknown)}")
        self.set_defaults(**(defaults or {}))

    def parse(self, argv: Sequence[str]) -> tuple[Any, ...]:
        """The dataclasses from the command-line arguments after the command name (old flags translated)."""
        return self.parse_args_and_config(translate_argv(self.command, argv))

    def parse_args_into_dataclasses(self, args: Sequence[str] | None = None, return_remaining_strings: bool = False, **_: Any) -> tuple[Any, ...]:
        # HfArgumentParser's version, without its `<script>.args` file lookup, with `resolve` before the
        # dataclasses are built, and argparse's usage error for an unknown option.
        namespace, remaining = self.parse_known_args(args=args)
        if remaining and not return_remaining_strings:
            self.error("unrecognized arguments: " + " ".join(remaining))
        vars(namespace).pop("config", None)
        if self.resolve is not None:
            self.resolve(namespace, self)
        values = vars(namespace)
        outputs = []
        for dtype in self.dataclass_types:
            keys = {f.name for f in dataclasses.fields(dtype) if f.init}
            outputs.append(dtype(**{key: value for key, value in values.items() if key in keys}))
        return (*outputs, remaining) if return_remaining_strings else tuple(outputs)


def require_output_dir(namespace: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if not getattr(namespace, "output_dir", None):
        parser.error("the output folder is required: --output_dir DIR (or `output_dir:` in the --config YAML)")
