"""Batched generation backends behind one interface (:class:`GenerationBackend`).

``base`` holds the interface and settings and imports no torch; each backend lives in its own
module and is imported on first use, so ``from hf_patchdist.generation import GenerationSettings``
stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..import_utils import lazy_exports
from .base import GeneratedText, GenerationBackend, GenerationSettings, StopFunction


if TYPE_CHECKING:
    from .ctranslate2_backend import CTranslate2Backend
    from .decode_loop import GenerationStats
    from .openvino_backend import OpenVINOBackend
    from .static_backend import StaticBackend
    from .transformers_backend import FinalAnswerStoppingCriteria, TransformersBackend
    from .vllm_backend import VLLMBackend

_LAZY = {
    "CTranslate2Backend": "ctranslate2_backend",
    "FinalAnswerStoppingCriteria": "transformers_backend",
    "GenerationStats": "decode_loop",
    "OpenVINOBackend": "openvino_backend",
    "TransformersBackend": "transformers_backend",
    "VLLMBackend": "vllm_backend",
    "StaticBackend": "static_backend",
}

__all__ = [
    "CTranslate2Backend",
    "FinalAnswerStoppingCriteria",
    "GeneratedText",
    "GenerationBackend",
    "GenerationSettings",
    "GenerationStats",
    "OpenVINOBackend",
    "StaticBackend",
    "StopFunction",
    "TransformersBackend",
    "VLLMBackend",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
