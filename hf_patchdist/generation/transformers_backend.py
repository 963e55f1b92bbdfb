"""Generation with ``model.generate``: left-padded batches, stopping at the final-answer line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .base import GeneratedText, GenerationBackend, GenerationSettings, StopFunction


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
