"""Batched generation backends behind one small interface.

The Rewriter only needs "complete these prompts, n candidates each, stop at the end of the final
answer line". :class:`TransformersBackend` does that with ``model.generate`` (the default),
:class:`VLLMBackend` with vLLM when it is installed, and :class:`StaticBackend` returns given texts,
so tests can drive the whole Generate-Verify-Fallback path deterministically.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .import_utils import is_vllm_available


StopFunction = Callable[[str], "int | None"]
"""Given the text generated so far, the index where it should end (after the final-answer line), or None."""


@dataclass
class GenerationSettings:
    """How candidates are generated.

    Attributes:
        max_new_tokens: Token limit per candidate; a candidate that hits it is marked truncated.
        do_sample: Sample instead of greedy decoding (needed for several distinct candidates).
        temperature: Sampling temperature.
        top_p: Nucleus sampling threshold.
        batch_size: Prompts per ``generate`` call.
    """

    max_new_tokens: int = 320
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GeneratedText:
    """One generated candidate.

    Attributes:
        text: The completion (without the prompt and special tokens), cut after the final-answer line.
        truncated: Whether generation hit ``max_new_tokens`` before ending on its own.
    """

    text: str
    truncated: bool = False


class GenerationBackend(abc.ABC):
    """Interface of a generation backend."""

    @abc.abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        *,
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None = None,
    ) -> list[list[GeneratedText]]:
        """Return ``num_candidates`` completions for each prompt (prompts already chat-rendered)."""


class FinalAnswerStoppingCriteria(StoppingCriteria):
    """Stop each row once its text holds a complete final-answer line.

    transformers' ``stop_strings`` needs the tokenizer passed to ``generate`` and matches literal
    strings only; the end of a final-answer line ("#### 72" followed by a newline, a closed
    ``\\boxed{}``) is a pattern, decided by the verifier's ``final_answer_end``.

    Args:
        tokenizer: Tokenizer used to decode the new tokens.
        prompt_length: Length of the (padded) prompt in the batch; tokens after it are new.
        stop: Function returning where the text should end, or None.
    """

    def __init__(self, tokenizer: Any, prompt_length: int, stop: StopFunction) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.stop = stop
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        last_tokens = self.tokenizer.batch_decode(input_ids[:, -1:])
        for row, piece in enumerate(last_tokens):
            # A final-answer line can only complete on a newline: decoding the whole row at every
            # step would cost quadratic time.
            if self.done[row] or "\n" not in piece:
                continue
            text = self.tokenizer.decode(input_ids[row, self.prompt_length :], skip_special_tokens=True)
            if self.stop(text) is not None:
                self.done[row] = True
        return self.done.clone()


class TransformersBackend(GenerationBackend):
    """Generate with ``model.generate``, left-padded batches, stopping at the final-answer line.

    Args:
        model: A causal LM (optionally with a PEFT adapter, which stays enabled).
        tokenizer: Its tokenizer.
        show_progress: Show a progress bar over batches.

    Example:
        ```python
        backend = TransformersBackend(model, tokenizer)
        backend.generate(["<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"],
                         num_candidates=1, settings=GenerationSettings(max_new_tokens=20))
        ```
    """

    def __init__(self, model: Any, tokenizer: Any, *, show_progress: bool = False) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.show_progress = show_progress

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None = None,
    ) -> list[list[GeneratedText]]:
        from tqdm.auto import tqdm

        results: list[list[GeneratedText]] = []
        device = next(self.model.parameters()).device
        padding_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        eos_ids = _eos_token_ids(self.model, self.tokenizer)
        try:
            starts = range(0, len(prompts), settings.batch_size)
            for start in tqdm(starts, desc="Generating", disable=not self.show_progress or len(starts) < 2):
                chunk = list(prompts[start : start + settings.batch_size])
                encoded = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                prompt_length = encoded["input_ids"].shape[1]
                criteria = StoppingCriteriaList()
                if stop is not None:
                    criteria.append(FinalAnswerStoppingCriteria(self.tokenizer, prompt_length, stop))
                kwargs: dict[str, Any] = {
                    "max_new_tokens": settings.max_new_tokens,
                    "do_sample": settings.do_sample,
                    "num_return_sequences": num_candidates,
                    "pad_token_id": self.tokenizer.pad_token_id,
                    "stopping_criteria": criteria,
                }
                if settings.do_sample:
                    kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
                else:
                    kwargs.update(temperature=None, top_p=None, top_k=None)
                output = self.model.generate(**encoded, **kwargs)
                new_tokens = output[:, prompt_length:]
                texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
                for index, text in enumerate(texts):
                    if index % num_candidates == 0:
                        results.append([])
                    ended = bool(torch.isin(new_tokens[index], eos_ids).any())
                    cut = stop(text) if stop is not None else None
                    truncated = not ended and cut is None and new_tokens.shape[1] >= settings.max_new_tokens
                    results[-1].append(GeneratedText(text=text, truncated=truncated))
        finally:
            self.tokenizer.padding_side = padding_side
        return results


def _eos_token_ids(model: Any, tokenizer: Any) -> torch.Tensor:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    ids = ids if isinstance(ids, list) else [ids]
    return torch.tensor([i for i in ids if i is not None], device=next(model.parameters()).device)


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
    ) -> list[list[GeneratedText]]:
        from vllm import SamplingParams

        params = SamplingParams(
            n=num_candidates,
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature if settings.do_sample else 0.0,
            top_p=settings.top_p,
        )
        lora = None
        if self.adapter is not None:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("rewriter", 1, self.adapter)
        outputs = self.llm.generate(list(prompts), params, lora_request=lora)
        return [
            [GeneratedText(text=o.text, truncated=o.finish_reason == "length") for o in request.outputs]
            for request in outputs
        ]


class StaticBackend(GenerationBackend):
    """Return given texts instead of generating: deterministic tests of Generate-Verify-Fallback.

    Args:
        responses: Either a function ``prompt -> str | list[str]`` or a sequence of texts used in
            turn (cycling). A text ending in the marker ``"<truncated>"`` is returned as truncated.

    Example:
        ```python
        backend = StaticBackend(lambda prompt: "6*12=72 so the answer follows.\\n#### 72")
        ```
    """

    TRUNCATED_MARKER = "<truncated>"

    def __init__(self, responses: Callable[[str], str | Sequence[str]] | Sequence[str]) -> None:
        self.responses = responses
        self.calls = 0
        self._position = 0

    def _next(self, prompt: str) -> list[str]:
        if callable(self.responses):
            value = self.responses(prompt)
            return [value] if isinstance(value, str) else list(value)
        value = self.responses[self._position % len(self.responses)]
        self._position += 1
        return [value]

    def generate(
        self,
        prompts: Sequence[str],
        *,
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None = None,
    ) -> list[list[GeneratedText]]:
        self.calls += 1
        results = []
        for prompt in prompts:
            texts: list[str] = []
            while len(texts) < num_candidates:
                texts += self._next(prompt)
            candidates = []
            for text in texts[:num_candidates]:
                truncated = text.endswith(self.TRUNCATED_MARKER)
                candidates.append(GeneratedText(text=text.removesuffix(self.TRUNCATED_MARKER), truncated=truncated))
            results.append(candidates)
        return results
