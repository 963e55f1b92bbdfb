"""Hashes behind :meth:`Rewriter.fingerprint <hf_patchdist.rewriter.Rewriter.fingerprint>`: a file's bytes, a loaded model's weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ADAPTER_WEIGHTS_NAME


if TYPE_CHECKING:
    from .rewriter import Rewriter


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(model: Any, skip_adapter: bool = False) -> str:
    """sha256 over a loaded model's parameters and buffers: name, dtype, shape and raw bytes of each.

    Names are taken as in the bare model (PEFT's ``base_model.model.`` prefix and ``.base_layer`` removed), so
    that wrapping a model with an adapter does not change the hash of its base weights; ``skip_adapter`` leaves
    the LoRA weights out (when they are hashed from the adapter file instead).
    """
    import torch

    digest = hashlib.sha256()
    named = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:  # shared (tied) parameters once
        if skip_adapter and "lora_" in name:
            continue
        named[name.removeprefix("base_model.model.").replace(".base_layer.", ".")] = tensor
    for name, tensor in sorted(named.items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        data = tensor.detach().contiguous().cpu().reshape(-1)
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def rewriter_fingerprint(rewriter: Rewriter) -> str:
    """The hash behind :meth:`Rewriter.fingerprint <hf_patchdist.rewriter.Rewriter.fingerprint>` (its docstring says what enters)."""
    from ..generation.transformers_backend import TransformersBackend

    digest = hashlib.sha256()
    config = rewriter.config.to_dict()
    config.pop("training_summary", None)
    digest.update(json.dumps(config, sort_keys=True).encode())
    digest.update(json.dumps([rewriter.question_column, rewriter.answer_column]).encode())
    if rewriter.adapter_path is not None:
        weights = Path(rewriter.adapter_path) / ADAPTER_WEIGHTS_NAME
        digest.update(file_sha256(weights).encode() if weights.is_file() else rewriter.adapter_path.encode())
    if rewriter._model_source is None and rewriter._model is not None:
        digest.update(weights_sha256(rewriter._model, skip_adapter=rewriter.adapter_path is not None).encode())
    named = rewriter._backend_choice()[0] if not rewriter._backend_given else None
    backend = rewriter.backend if named not in (None, "transformers") else rewriter._backend  # built once
    if backend is not None and not isinstance(backend, TransformersBackend):
        identity = getattr(backend, "fingerprint", None)  # vLLM, CTranslate2: their weights, adapter hash, settings
        digest.update((identity() if callable(identity) else type(backend).__qualname__).encode())
    return digest.hexdigest()[:16]
