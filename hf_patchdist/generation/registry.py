"""Generation backends by name: ``"transformers"``, ``"vllm"``, ``"ctranslate2"``, ``"openvino"``.

The Rewriter (``Rewriter(..., backend="ctranslate2")``) and the ``--backend`` option of the command line
build their backend here; each backend module is imported only when its name is asked for. With no name,
:func:`default_backend` chooses: OpenVINO on CPU where it can run the model, transformers elsewhere.
"""

from __future__ import annotations

import os
from typing import Any

from .base import GenerationBackend


BACKEND_NAMES = ("transformers", "vllm", "ctranslate2", "openvino")
"""Backends selectable by name (with none named, :func:`default_backend` chooses)."""

LOADS_ITS_OWN_MODEL = ("vllm", "ctranslate2", "openvino")
"""Backends that load the weights themselves, from the model's name or folder (not from a loaded model)."""


BACKEND_ENV = "HF_PATCHDIST_BACKEND"
"""Environment variable naming the backend of every Rewriter that is given none (overrides :func:`default_backend`)."""


def default_backend(model_source: str | None, device: str | None, backend_options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The backend (name and options) of a Rewriter that names none.

    OpenVINO GenAI on CPU, for a model given by name or folder that its GGUF reader can rebuild (Llama-family),
    when ``openvino-genai`` is installed and no backend options were given (they belong to a named backend);
    in the project's CPU precision (bf16 where the CPU computes it natively, else f32). On this project's
    2-core host it rewrote the 32 prompts of ``benchmarks/rewrite_throughput.py`` 1.44x faster than the
    transformers backend in bf16, at 0.61x the prefill ceiling (f32: 1.19x, greedy text equal to transformers
    float32 on 32/32). Everything else (a GPU, a loaded model such as the policy of a training run, other
    architectures) gets ``"transformers"``. :data:`BACKEND_ENV` overrides the choice.
    """
    if os.environ.get(BACKEND_ENV):
        return check_backend_name(os.environ[BACKEND_ENV]), backend_options
    on_cpu = device is None or str(device).startswith("cpu")
    if model_source is None or backend_options or not on_cpu:
        return "transformers", backend_options
    from ..import_utils import is_openvino_genai_available
    from ..models import default_device

    if not is_openvino_genai_available() or (device is None and default_device() != "cpu"):
        return "transformers", backend_options
    from transformers import AutoConfig

    from ..models import default_dtype, resolve_model_path
    from .gguf_export import unsupported_reason

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model_source))
    except (OSError, ValueError):
        return "transformers", backend_options
    if unsupported_reason(config) is not None:
        return "transformers", backend_options
    import torch

    return "openvino", {"inference_precision": "bf16" if default_dtype("cpu") == torch.bfloat16 else "f32"}


def check_backend_name(name: str) -> str:
    """``name`` when it names a backend, else a ValueError listing the names."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"Unknown generation backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}.")
    return name


def backend_from_name(
    name: str,
    model: Any,
    tokenizer: Any = None,
    *,
    adapter: str | os.PathLike | None = None,
    show_progress: bool = False,
    **options: Any,
) -> GenerationBackend:
    """Build the generation backend called ``name``.

    Args:
        name: One of :data:`BACKEND_NAMES`.
        model: For ``"transformers"`` the loaded model (with its adapter, when there is one); for the
            backends that load their own weights the model's name or folder (the embedded alias included).
        tokenizer: The transformers tokenizer (``"transformers"``, ``"ctranslate2"``, ``"openvino"``; vLLM loads its own).
        adapter: LoRA adapter folder, for the backends that load their own weights (vLLM applies it at run
            time, CTranslate2 and OpenVINO merge it into the converted weights).
        show_progress: Progress bars (``"transformers"``).
        **options: The backend's own options: ``decode_loop`` (transformers); ``gpu_memory_utilization`` and
            ``vllm.LLM`` arguments (vLLM); ``compute_type``, ``device``, ``cache_dir``, ``intra_threads``,
            ``seed``, ``trust_remote_code`` (CTranslate2); ``weight_format``, ``inference_precision``,
            ``kv_cache_precision``, ``cache_dir``, ``threads``, ``seed``... (OpenVINO, see
            :class:`~hf_patchdist.generation.openvino_backend.OpenVINOBackend`).

    Example:
        ```python
        backend = backend_from_name("ctranslate2", "smollm2-135m-instruct", compute_type="int8")
        ```
    """
    check_backend_name(name)
    if name == "transformers":
        from .transformers_backend import TransformersBackend

        return TransformersBackend(model, tokenizer, show_progress=show_progress, **options)
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(
            f"The {name!r} backend loads the weights itself: give the model by name or folder, not as a loaded model."
        )
    from ..models import resolve_model_path

    if name == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend(resolve_model_path(model), adapter=adapter, **options)
    if name == "openvino":
        from .openvino_backend import OpenVINOBackend

        return OpenVINOBackend(model, tokenizer, adapter=adapter, **options)
    from .ctranslate2_backend import CTranslate2Backend

    return CTranslate2Backend(model, tokenizer, adapter=adapter, **options)
