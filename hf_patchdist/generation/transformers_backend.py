"""Generation with a transformers model: its own decode loop over a KV cache (default) or ``model.generate``.

:class:`TransformersBackend` sorts prompts by length, batches them, and either runs the decode loop
of :mod:`~hf_patchdist.generation.decode_loop` (``decode_loop="cache"``, the default: finished rows
leave the batch, the candidates of a prompt share its prefill, per-prompt token limits) or
``model.generate`` on static left-padded batches (``decode_loop="generate"``, the escape hatch). The
backend falls back to ``generate`` by itself, logging why, for a model the loop cannot drive: an
encoder-decoder, a prompt-learning PEFT adapter, a cache not made of full-attention
``DynamicLayer`` layers, or generation-config options the loop does not apply (repetition
penalty, beams...).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .base import GeneratedText, GenerationBackend, GenerationSettings, StopFunction, resolve_token_limits
from .decode_loop import CacheLoopUnsupported, DecodeLoop, GenerationStats, token_has_newline, unsupported_reason


logger = logging.getLogger(__name__)

DECODE_LOOPS = ("cache", "generate")


class FinalAnswerStoppingCriteria(StoppingCriteria):
    """Stop each row once its text holds a complete final-answer line (the ``generate`` path).

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


class RowTokenLimitCriteria(StoppingCriteria):
    """Stop each row of a ``generate`` batch at its own number of new tokens (the ``generate`` path).

    Args:
        prompt_length: Length of the (padded) prompt in the batch.
        limits: New-token limit of each row of the batch.
    """

    def __init__(self, prompt_length: int, limits: Sequence[int]) -> None:
        self.prompt_length = prompt_length
        self.limits = torch.tensor(list(limits), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.prompt_length
        return (self.limits.to(input_ids.device) <= generated)


class TransformersBackend(GenerationBackend):
    """Generate with a transformers model: its own decode loop over a KV cache, or ``model.generate``.

    See the module docstring for what the decode loop saves. Both paths sort the prompts by length,
    stop a row at the end of its final-answer line and at its own token limit, and return the same
    :class:`GeneratedText` fields.

    Args:
        model: A causal LM (optionally with a LoRA adapter, which stays enabled).
        tokenizer: Its tokenizer.
        show_progress: Show a progress bar over batches.
        decode_loop: ``"cache"`` (default): the decode loop that drops finished rows and shares the
            prompt's prefill across candidates, falling back to ``"generate"`` (with a logged
            reason) for a model it cannot drive; ``"generate"``: always ``model.generate`` on
            static left-padded batches (the escape hatch).

    Example:
        ```python
        backend = TransformersBackend(model, tokenizer)
        backend.generate(["<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"],
                         num_candidates=1, settings=GenerationSettings(max_new_tokens=20))
        ```
    """

    def __init__(self, model: Any, tokenizer: Any, *, show_progress: bool = False, decode_loop: str = "cache") -> None:
        if decode_loop not in DECODE_LOOPS:
            raise ValueError(f"decode_loop must be one of {DECODE_LOOPS}, got {decode_loop!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.show_progress = show_progress
        self.decode_loop = decode_loop
        self.fallback_reason: str | None = None
        self.last_stats = GenerationStats(decode_loop=decode_loop)
        self._piece_has_newline: dict[int, bool] = {}

    # ------------------------------------------------------------------ the interface
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None = None,
        max_new_tokens: Sequence[int] | None = None,
    ) -> list[list[GeneratedText]]:
        """Return ``num_candidates`` completions per prompt.

        Args:
            prompts: Chat-rendered prompts.
            num_candidates: Completions per prompt (sampled when ``settings.do_sample``).
            settings: Sampling options, ``batch_size`` (prompts per batch) and ``max_new_tokens``.
            stop: The verifier's ``final_answer_end``: a row ends once its final-answer line is complete.
            max_new_tokens: Optional token limit of each prompt's candidates, instead of
                ``settings.max_new_tokens``. A candidate that hits its limit without an
                end-of-sequence token or a complete final-answer line is marked truncated.
        """
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be at least 1, got {num_candidates}")
        limits = resolve_token_limits(len(prompts), settings, max_new_tokens)
        if not prompts:
            return []
        if self.decode_loop == "cache" and self.fallback_reason is None:
            self.fallback_reason = unsupported_reason(self.model)
            if self.fallback_reason is not None:
                self._log_fallback()
        if self.decode_loop == "cache" and self.fallback_reason is None:
            try:
                return self._generate_cache_loop(prompts, num_candidates, settings, stop, limits)
            except CacheLoopUnsupported as reason:
                self.fallback_reason = str(reason)
                self._log_fallback()
        return self._generate_with_generate(prompts, num_candidates, settings, stop, limits)

    def _log_fallback(self) -> None:
        logger.warning(
            "TransformersBackend: the decode loop cannot drive this model (%s); generating with model.generate "
            "instead (slower: it decodes finished rows and prefills each prompt once per candidate).",
            self.fallback_reason,
        )

    # ------------------------------------------------------------------ shared helpers
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        """The token ids each prompt is generated from (no special tokens added: prompts are chat-rendered)."""
        return [list(ids) for ids in self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]

    def _batches(self, lengths: Sequence[int], batch_size: int) -> list[list[int]]:
        """Prompt indices by decreasing length, cut into batches of ``batch_size``."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        size = max(int(batch_size), 1)
        return [order[start : start + size] for start in range(0, len(order), size)]

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        return int(pad) if pad is not None else 0

    def _result(self, tokens: Sequence[int], ended: bool, limit: int, stop: StopFunction | None) -> GeneratedText:
        text = self.tokenizer.decode(list(tokens), skip_special_tokens=True)
        cut = stop(text) if stop is not None else None
        truncated = not ended and cut is None and len(tokens) >= limit
        return GeneratedText(text=text, truncated=truncated)

    # ------------------------------------------------------------------ the decode loop
    def _generate_cache_loop(
        self,
        prompts: Sequence[str],
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None,
        limits: list[int],
    ) -> list[list[GeneratedText]]:
        from tqdm.auto import tqdm

        self.last_stats = GenerationStats(decode_loop="cache")
        loop = DecodeLoop(self.model, self.tokenizer, self.last_stats, self._piece_has_newline)
        device = self._device()
        encoded = self.encode(prompts)
        self.last_stats.prompt_tokens = sum(len(ids) for ids in encoded)
        eos = set(_eos_token_ids(self.model, self.tokenizer).tolist())
        results: list[list[GeneratedText]] = [[] for _ in prompts]
        token_ids: list[list[list[int]]] = [[] for _ in prompts]
        batches = self._batches([len(ids) for ids in encoded], settings.batch_size)
        for batch in tqdm(batches, desc="Generating", disable=not self.show_progress or len(batches) < 2):
            rows = loop.decode_batch(
                [encoded[i] for i in batch], [limits[i] for i in batch], num_candidates, settings, stop, eos, device
            )
            for position, index in enumerate(batch):
                for tokens, ended in rows[position * num_candidates : (position + 1) * num_candidates]:
                    results[index].append(self._result(tokens, ended, limits[index], stop))
                    token_ids[index].append(tokens)
        self.last_stats.token_ids = token_ids
        return results

    # ------------------------------------------------------------------ the generate path
    def _generate_with_generate(
        self,
        prompts: Sequence[str],
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None,
        limits: list[int],
    ) -> list[list[GeneratedText]]:
        """``model.generate`` on left-padded static batches (prompts sorted by length)."""
        from tqdm.auto import tqdm

        self.last_stats = GenerationStats(decode_loop="generate")
        device = self._device()
        encoded = self.encode(prompts)
        self.last_stats.prompt_tokens = sum(len(ids) for ids in encoded)
        eos_ids = _eos_token_ids(self.model, self.tokenizer)
        pad_id = self._pad_id()
        results: list[list[GeneratedText] | None] = [None] * len(prompts)
        token_ids: list[list[list[int]]] = [[] for _ in prompts]
        batches = self._batches([len(ids) for ids in encoded], settings.batch_size)
        for batch in tqdm(batches, desc="Generating", disable=not self.show_progress or len(batches) < 2):
            prompt_length = len(encoded[batch[0]])
            input_ids = torch.full((len(batch), prompt_length), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), prompt_length), dtype=torch.long)
            for row, index in enumerate(batch):
                input_ids[row, prompt_length - len(encoded[index]) :] = torch.tensor(encoded[index], dtype=torch.long)
                mask[row, prompt_length - len(encoded[index]) :] = 1
            row_limits = [limits[index] for index in batch for _ in range(num_candidates)]
            criteria = StoppingCriteriaList()
            if stop is not None:
                criteria.append(FinalAnswerStoppingCriteria(self.tokenizer, prompt_length, stop))
            if len(set(row_limits)) > 1:
                criteria.append(RowTokenLimitCriteria(prompt_length, row_limits))
            kwargs: dict[str, Any] = {
                "max_new_tokens": max(row_limits),
                "do_sample": settings.do_sample,
                "num_return_sequences": num_candidates,
                "pad_token_id": self.tokenizer.pad_token_id,
                "stopping_criteria": criteria,
            }
            if settings.do_sample:
                kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            output = self.model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs)
            self.last_stats.prefill_forwards += 1
            self.last_stats.prefill_padded_tokens += input_ids.numel() * num_candidates
            new_tokens = output[:, prompt_length:].cpu()
            eos = set(eos_ids.tolist())
            for row, limit in enumerate(row_limits):
                row_tokens, ended = self._finished_prefix(new_tokens[row, :limit].tolist(), eos, stop)
                self.last_stats.generated_tokens += len(row_tokens)
                index = batch[row // num_candidates]
                if row % num_candidates == 0:
                    results[index], token_ids[index] = [], []
                results[index].append(self._result(row_tokens, ended, limit, stop))  # type: ignore[union-attr]
                token_ids[index].append(row_tokens)
        self.last_stats.token_ids = token_ids
        return results  # type: ignore[return-value]

    def _finished_prefix(self, tokens: list[int], eos: set[int], stop: StopFunction | None) -> tuple[list[int], bool]:
        """A ``generate`` row up to the token that finished it (end-of-sequence, or the final-answer
        line completed; ``generate`` pads after it), and whether an end-of-sequence token ended it."""
        for position, token in enumerate(tokens):
            if token in eos:
                return tokens[: position + 1], True
            if stop is not None and token_has_newline(self.tokenizer, token, self._piece_has_newline):
                if stop(self.tokenizer.decode(tokens[: position + 1], skip_special_tokens=True)) is not None:
                    return tokens[: position + 1], False
        return tokens, False


def _eos_token_ids(model: Any, tokenizer: Any) -> torch.Tensor:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    ids = ids if isinstance(ids, list) else [ids]
    return torch.tensor([i for i in ids if i is not None], device=next(model.parameters()).device)
