"""The rewriter: its config (``config``), Generate-Verify-Fallback over a data set (``rewriter``) and the patch cache (``cache``)."""

from .cache import PatchResult, default_patch_cache_dir, patch_cache_key, patch_with_cache
from .config import (
    ADAPTER_WEIGHTS_NAME,
    DEFAULT_PROMPT_TEMPLATE,
    PATCH_COLUMNS,
    REJECTED_COLUMN,
    REWRITER_CONFIG_NAME,
    REWRITER_FORMAT_VERSION,
    RewriterConfig,
    build_prompt_messages,
    check_adapter_folder,
    final_answer_line,
    strip_calculator_annotations,
)
from .rewriter import Rewriter


__all__ = [
    "ADAPTER_WEIGHTS_NAME",
    "DEFAULT_PROMPT_TEMPLATE",
    "PATCH_COLUMNS",
    "REJECTED_COLUMN",
    "REWRITER_CONFIG_NAME",
    "REWRITER_FORMAT_VERSION",
    "PatchResult",
    "Rewriter",
    "RewriterConfig",
    "build_prompt_messages",
    "check_adapter_folder",
    "default_patch_cache_dir",
    "final_answer_line",
    "patch_cache_key",
    "patch_with_cache",
    "strip_calculator_annotations",
]
