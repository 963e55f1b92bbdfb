"""The package re-exports every public name of its modules: ``from hf_patchdist.evaluation import X`` keeps working."""

from __future__ import annotations

import importlib
import inspect

from hf_patchdist import evaluation

MODULES = ("tasks", "task_files", "config", "metrics", "likelihood", "lm_eval_harness", "sampling", "report", "runner")


def test_every_public_name_is_exported():
    for module_name in MODULES:
        module = importlib.import_module(f"hf_patchdist.evaluation.{module_name}")
        own = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and not inspect.ismodule(value) and getattr(value, "__module__", module.__name__) == module.__name__
        ]
        assert set(own) <= set(evaluation.__all__), (module_name, sorted(set(own) - set(evaluation.__all__)))
    for name in evaluation.__all__:
        assert getattr(evaluation, name) is not None
