"""What the backends that convert a transformers model once (CTranslate2, OpenVINO) share.

The identity of a model folder (:func:`model_sha256`), the base model with a LoRA adapter merged in
(:func:`load_merged_model`, :func:`save_merged_model`), the end-of-sequence ids of a converted folder
(:func:`end_of_sequence_ids`), and publishing a folder built aside so that it appears whole or not at
all (:func:`publish_folder`). torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any


WEIGHT_SUFFIXES = (".safetensors", ".bin")


def model_sha256(folder: str | os.PathLike) -> str:
    """sha256 over a transformers model folder's ``config.json`` and weight files (names and bytes)."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(folder.iterdir()):
        if path.name == "config.json" or path.suffix in WEIGHT_SUFFIXES:
            digest.update(path.name.encode())
            with open(path, "rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def source_sha256(source: str) -> str:
    """The weights' identity of a resolved model: :func:`model_sha256` of a folder, else the sha256 of its Hub id."""
    return model_sha256(source) if Path(source).is_dir() else hashlib.sha256(source.encode()).hexdigest()


def load_merged_model(
    model: str, adapter: str | None = None, *, trust_remote_code: bool = False
) -> tuple[Any, Any]:
    """The model in float32 on CPU with ``adapter`` (a PEFT LoRA folder) merged in (``merge_and_unload``), and its tokenizer."""
    from ..models import load_model_and_tokenizer

    base, tokenizer = load_model_and_tokenizer(model, dtype="float32", device="cpu", trust_remote_code=trust_remote_code)
    if adapter is None:
        return base, tokenizer
    from peft import PeftModel

    return PeftModel.from_pretrained(base, adapter, is_trainable=False).merge_and_unload(), tokenizer


def save_merged_model(model: str, adapter: str, folder: Path, *, trust_remote_code: bool) -> None:
    """The base model with the LoRA adapter merged in, saved with its tokenizer into ``folder``."""
    merged, tokenizer = load_merged_model(model, adapter, trust_remote_code=trust_remote_code)
    merged.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def end_of_sequence_ids(folder: str | os.PathLike, tokenizer: Any) -> list[int]:
    """The tokenizer's end-of-sequence id and those of ``generation_config.json`` in ``folder``, sorted."""
    ids = {tokenizer.eos_token_id}
    config = Path(folder) / "generation_config.json"
    if config.is_file():
        value = json.loads(config.read_text(encoding="utf-8")).get("eos_token_id")
        ids |= set(value if isinstance(value, list) else [value])
    return sorted(i for i in ids if i is not None)


def publish_folder(staging: Path, target: Path) -> Path:
    """Rename the finished ``staging`` folder to ``target``; when another process published it meanwhile, drop ours."""
    if target.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(target)
    return target
