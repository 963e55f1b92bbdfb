"""Availability checks for optional dependencies (imported where used, never at package import)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache


@lru_cache
def _is_package_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def is_vllm_available() -> bool:
    """Whether vLLM can be imported (optional fast generation backend)."""
    return _is_package_available("vllm")


def is_matplotlib_available() -> bool:
    """Whether matplotlib can be imported (optional plots)."""
    return _is_package_available("matplotlib")


def is_lm_eval_available() -> bool:
    """Whether EleutherAI's lm-evaluation-harness (``lm_eval``) can be imported (optional evaluation engine)."""
    return _is_package_available("lm_eval")
