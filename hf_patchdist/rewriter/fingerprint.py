"""Hashes behind :meth:`Rewriter.fingerprint <hf_patchdist.rewriter.Rewriter.fingerprint>`: a file's bytes, a loaded model's weights."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


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
