"""Generation with vLLM (``pip install hf-patchdist[vllm]``), optionally with a LoRA adapter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..import_utils import is_vllm_available
from .base import GeneratedText, GenerationBackend, GenerationSettings, StopFunction


class VLLMBackend(GenerationBackend):
    """Generate with vLLM (``pip install hf-patchdist[vllm]``), optionally with a LoRA adapter.

    Args:
        model: Model folder or Hub id vLLM can load.
        adapter: Folder of a LoRA adapter to apply, or None.
        **llm_kwargs: Passed to ``vllm.LLM``.
    """

    def __init__(self, model: str, adapter: str | None = None, **llm_kwargs: Any) -> None:
        if not is_vllm_available():
            raise ImportError("VLLMBackend needs vLLM: pip install 'hf-patchdist[vllm]'")
        from vllm import LLM

        self.adapter = adapter
        self.llm = LLM(model=model, enable_lora=adapter is not None, **llm_kwargs)

    def generate(
        self,
        prompts: Sequence[str],
        *,
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None = None,
        max_new_tokens: Sequence[int] | None = None,
    ) -> list[list[GeneratedText]]:
        from vllm import SamplingParams

        limits = list(max_new_tokens) if max_new_tokens is not None else [settings.max_new_tokens] * len(prompts)
        params = [
            SamplingParams(
                n=num_candidates,
                max_tokens=int(limit),
                temperature=settings.temperature if settings.do_sample else 0.0,
                top_p=settings.top_p,
                top_k=settings.top_k or -1,  # vLLM's "every token" is -1
            )
            for limit in limits
        ]
        lora = None
        if self.adapter is not None:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("rewriter", 1, self.adapter)
        outputs = self.llm.generate(list(prompts), params, lora_request=lora)
        return [
            [GeneratedText(text=o.text, truncated=o.finish_reason == "length") for o in request.outputs]
            for request in outputs
        ]
