"""The ``hf-patchdist`` command line (the console script is ``hf_patchdist.cli:main``).

- ``main``: the top-level parser and the subcommands (``main.py``);
- ``rewrite``, ``push``, ``evaluate``: argparse commands;
- ``sft``, ``train_rewriter``: TRL's parser over the training configs, a YAML file through ``--config``
  (``arguments.py`` holds the options that are not TRL's, ``legacy.py`` translates the former flags).
"""

from __future__ import annotations

from .main import build_parser, main


__all__ = ["build_parser", "main"]
