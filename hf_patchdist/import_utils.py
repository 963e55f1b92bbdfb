"""Availability checks for optional dependencies (imported where used, never at package import)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any


@lru_cache
def _is_package_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def is_vllm_available() -> bool:
    """Whether vLLM can be imported (optional fast generation backend)."""
    return _is_package_available("vllm")


def is_ctranslate2_available() -> bool:
    """Whether CTranslate2 can be imported (optional CPU generation backend)."""
    return _is_package_available("ctranslate2")


def is_openvino_genai_available() -> bool:
    """Whether OpenVINO GenAI (``openvino_genai``) can be imported (optional CPU generation backend)."""
    return _is_package_available("openvino_genai")


def is_matplotlib_available() -> bool:
    """Whether matplotlib can be imported (optional plots)."""
    return _is_package_available("matplotlib")


def is_lm_eval_available() -> bool:
    """Whether EleutherAI's lm-evaluation-harness (``lm_eval``) can be imported (optional evaluation engine)."""
    return _is_package_available("lm_eval")


def lazy_exports(
    package: str, name_to_module: Mapping[str, str], deprecated: Mapping[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose public names are imported on first use (PEP 562).

    transformers and TRL do the same with a lazy module: importing the package costs nothing, and a name
    pulls in its module (and torch, TRL...) only when it is used.

    Args:
        package: The package's ``__name__``.
        name_to_module: Public name -> module, relative to the package, that defines it.
        deprecated: Old name -> new name; the old one still works and warns (``FutureWarning``).

    Returns:
        ``(__getattr__, __dir__)`` to assign at the package's top level.
    """
    deprecated = dict(deprecated or {})

    def __getattr__(name: str) -> Any:
        if name in deprecated:
            new = deprecated[name]
            warnings.warn(
                f"`{name}` is deprecated and will be removed in the next release; use `{new}` (same class).",
                FutureWarning,
                stacklevel=2,
            )
            return __getattr__(new)
        module = name_to_module.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)  # the next access costs nothing
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(name_to_module))

    return __getattr__, __dir__
