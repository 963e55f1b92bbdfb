"""Generation with vLLM (``pip install hf-patchdist[vllm]``), optionally with a LoRA adapter.

What the backend does for the Rewriter that a bare ``LLM.generate`` call would not:

* prompts arrive chat-rendered (the template already wrote the BOS token): they are tokenised here
  with ``add_special_tokens=False`` and passed as token ids, since vLLM would add a second BOS to a
  text prompt (Llama, Mistral);
* vLLM's ``stop`` takes literal strings, while the end of a final-answer line is a pattern (the
  verifier's ``final_answer_end``): each completion is cut after its final-answer line, and one
  cut there is complete, not truncated, whatever vLLM's finish reason;
* vLLM sizes its LoRA buffers with ``max_lora_rank`` (default 16, fixed values only), below the
  rewriter's default rank of 64: the rank is read from the adapter and rounded up;
* vLLM takes ``gpu_memory_utilization`` of the GPU at start, and the Rewriter keeps a transformers
  copy of the base model for pi_0 scoring on the same GPU: the default leaves room for it;
* :meth:`VLLMBackend.fingerprint` holds the model, the adapter's weights hash and the settings, so
  two adapters never share a patch-cache entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..import_utils import is_vllm_available
from .base import GeneratedText, GenerationBackend, GenerationSettings, StopFunction, resolve_token_limits


# vLLM's `LoRAConfig.max_lora_rank` is a Literal of these values (vllm/config/lora.py, `MaxLoRARanks`).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def vllm_lora_rank(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds an adapter of rank ``rank``.

    Example:
        ```python
        >>> vllm_lora_rank(64), vllm_lora_rank(12), vllm_lora_rank(4)
        (64, 16, 8)
        ```
    """
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"vLLM serves LoRA adapters up to rank {VLLM_LORA_RANKS[-1]}; this adapter has rank {rank}.")


def adapter_rank(adapter: str) -> int | None:
    """The largest LoRA rank in a PEFT adapter folder (``r`` and any ``rank_pattern`` entry), or None."""
    path = Path(adapter) / ADAPTER_CONFIG_NAME
    if not path.is_file():
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    ranks = [int(config.get("r") or 0), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    return max(ranks) or None


def adapter_sha256(adapter: str) -> str:
    """sha256 of the adapter's weights file (the folder name when there is none)."""
    for name in ADAPTER_WEIGHT_FILES:
        path = Path(adapter) / name
        if path.is_file():
            with open(path, "rb") as handle:
                return hashlib.file_digest(handle, "sha256").hexdigest()
    return str(adapter)


class VLLMBackend(GenerationBackend):
    """Generate with vLLM (``pip install hf-patchdist[vllm]``), optionally with a LoRA adapter.

    Args:
        model: Model folder or Hub id vLLM can load (the rewriter's base model).
        adapter: Folder of a LoRA adapter to apply (the trained rewriter), or None.
        gpu_memory_utilization: Fraction of the GPU vLLM takes at start for weights and KV cache.
            vLLM's own default, 0.9, leaves too little for the transformers copy of the base model that
            the Rewriter loads on the same GPU to score candidates under pi_0 (about 2 bytes per
            parameter in bfloat16, plus a scoring batch's activations). 0.6 leaves 40% of the GPU to it;
            raise it when scoring runs on another device, lower it for a large model.
        max_lora_rank: vLLM's ``max_lora_rank``; None reads the adapter's rank and rounds it up to a
            value vLLM accepts (:data:`VLLM_LORA_RANKS`).
        **llm_kwargs: Passed to ``vllm.LLM`` (``dtype``, ``max_model_len``, ``tensor_parallel_size``...).

    Example:
        ```python
        backend = VLLMBackend("HuggingFaceTB/SmolLM2-135M-Instruct", adapter="my-rewriter")
        rewriter = Rewriter("HuggingFaceTB/SmolLM2-135M-Instruct", adapter="my-rewriter", backend=backend)
        ```
    """

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        *,
        gpu_memory_utilization: float = 0.6,
        max_lora_rank: int | None = None,
        **llm_kwargs: Any,
    ) -> None:
        if not is_vllm_available():
            raise ImportError("VLLMBackend needs vLLM: pip install 'hf-patchdist[vllm]'")
        from vllm import LLM

        self.model_name = str(model)
        self.adapter = str(adapter) if adapter is not None else None
        self.adapter_sha256 = adapter_sha256(self.adapter) if self.adapter is not None else None
        kwargs: dict[str, Any] = {"gpu_memory_utilization": gpu_memory_utilization, **llm_kwargs}
        if self.adapter is not None:
            kwargs["enable_lora"] = True
            rank = max_lora_rank if max_lora_rank is not None else adapter_rank(self.adapter)
            if rank is not None:
                kwargs["max_lora_rank"] = vllm_lora_rank(rank)
        self.llm_kwargs = kwargs
        self.llm = LLM(model=self.model_name, **kwargs)
        self._tokenizer: Any = None

    def fingerprint(self) -> str:
        """What decides this backend's outputs: model, adapter weights, vLLM settings (for the patch cache)."""
        record = {
            "backend": type(self).__qualname__,
            "model": self.model_name,
            "adapter_sha256": self.adapter_sha256,
            "llm_kwargs": self.llm_kwargs,
        }
        return json.dumps(record, sort_keys=True, default=str)

    def _encode(self, prompts: Sequence[str]) -> list[dict[str, list[int]]]:
        """Token-id prompts: the chat template already wrote the special tokens (no second BOS)."""
        if self._tokenizer is None:
            self._tokenizer = self.llm.get_tokenizer()
        encoded = self._tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        return [{"prompt_token_ids": list(ids)} for ids in encoded]

    def generate(
        self,
        prompts: Sequence[str],
        *,
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None = None,
        max_new_tokens: Sequence[int] | None = None,
    ) -> list[list[GeneratedText]]:
        """``num_candidates`` completions per chat-rendered prompt, each cut after its final-answer line.

        Args:
            prompts: Chat-rendered prompts.
            num_candidates: Completions per prompt.
            settings: Sampling options and ``max_new_tokens``.
            stop: The verifier's ``final_answer_end``; a completion is cut where it returns an index.
            max_new_tokens: Optional token limit of each prompt, instead of ``settings.max_new_tokens``.
        """
        from vllm import SamplingParams

        if not prompts:
            return []
        limits = resolve_token_limits(len(prompts), settings, max_new_tokens)
        params = [
            SamplingParams(
                n=num_candidates,
                max_tokens=limit,
                temperature=settings.temperature if settings.do_sample else 0.0,
                top_p=settings.top_p if settings.do_sample else 1.0,
                top_k=settings.top_k or -1,  # vLLM's "every token" is -1
            )
            for limit in limits
        ]
        lora = None
        if self.adapter is not None:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("rewriter", 1, self.adapter)
        outputs = self.llm.generate(self._encode(prompts), params, lora_request=lora, use_tqdm=False)
        return [[_generated_text(o.text, o.finish_reason, stop) for o in request.outputs] for request in outputs]


def _generated_text(text: str, finish_reason: str | None, stop: StopFunction | None) -> GeneratedText:
    """A completion cut after its final-answer line (then complete), else truncated when vLLM hit the limit."""
    cut = stop(text) if stop is not None else None
    if cut is not None:
        return GeneratedText(text=text[:cut], truncated=False)
    return GeneratedText(text=text, truncated=finish_reason == "length")
