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

from .base import GeneratedText, GenerationBackend, StopFunction
from .decode_loop import token_has_newline


WEIGHT_SUFFIXES = (".safetensors", ".bin")



class TokenIdBackend(GenerationBackend):
    """A backend whose engine returns token ids that the transformers tokenizer decodes (CTranslate2, OpenVINO): the
    final-answer stop and the truncation verdict they share. Subclasses set ``tokenizer`` and ``_piece_has_newline``."""

    tokenizer: Any
    _piece_has_newline: dict[int, bool]

    def _line_complete(self, tokens: list[int], stop: StopFunction | None) -> bool:
        # A final-answer line can only complete on a newline: decoding at every token would cost quadratic time.
        if stop is None or not token_has_newline(self.tokenizer, tokens[-1], self._piece_has_newline):
            return False
        return stop(self.tokenizer.decode(tokens, skip_special_tokens=True)) is not None

    def _result(self, tokens: list[int], eos: set[int], limit: int, stop: StopFunction | None) -> GeneratedText:
        ended = bool(tokens) and tokens[-1] in eos
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = stop(text) if stop is not None else None
        return GeneratedText(text=text, truncated=not ended and cut is None and len(tokens) >= limit)

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
