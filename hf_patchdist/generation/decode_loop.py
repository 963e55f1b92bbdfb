"""The decode loop of :class:`~hf_patchdist.generation.transformers_backend.TransformersBackend`.

``model.generate`` on a static batch pays for tokens nobody reads: it decodes every row until the
longest one finishes, prefills each prompt once per candidate (``num_return_sequences`` repeats the
prompt before the prefill), and pads every prompt to the longest of its batch. :class:`DecodeLoop`
drives the model's forward pass over a KV cache instead:

* the prompts of a batch (sorted by decreasing length) are prefilled in micro-batches of similar
  length, whose caches are joined, left-padded, into one;
* the K candidates of a prompt share its prefill, and, for plain-attention architectures, its
  keys and values during the decode too (:mod:`~hf_patchdist.generation.shared_prefix`); other
  models get the cache expanded K times (``Cache.batch_repeat_interleave``) after one prefill;
* a row that finished (end-of-sequence token, a complete final-answer line by ``stop``, or its own
  token limit) leaves the batch (``Cache.batch_select_indices``) with its attention-mask and
  position rows, so each decode step computes only unfinished rows;
* the cache keeps room for the batch's longest limit, so a decode step writes its keys and values
  in place instead of concatenating (copying) the whole cache.

Greedy decoding takes the arg-max, as ``generate`` does; sampling applies ``generate``'s own
temperature and top-p warpers. :func:`unsupported_reason` and :class:`CacheLoopUnsupported` say when
the loop cannot drive a model, and the backend then falls back to ``generate``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .base import GenerationSettings, StopFunction, length_groups
from .cache_layers import reserved_layer_class
from .shared_prefix import ATTENTION_NAME as SHARED_ATTENTION
from .shared_prefix import STATE_ARGUMENT as SHARED_STATE_ARGUMENT
from .shared_prefix import SharedPrefixState, register_attention, shared_layer_class, shared_prefix_supported


# Padding a prefill micro-batch may add, as a fraction of its real tokens, before a new one starts.
PREFILL_PADDING_WASTE = 0.1
# Tokens (padding included) of one prefill micro-batch: bounds the prefill's activation memory.
PREFILL_TOKEN_BUDGET = 8192

# Generation-config fields whose non-default value changes ``generate``'s logits (or its search):
# the decode loop applies none of them, so a model that sets one falls back to ``generate``.
UNSUPPORTED_GENERATION_OPTIONS = (
    "num_beams",
    "num_beam_groups",
    "penalty_alpha",
    "repetition_penalty",
    "encoder_repetition_penalty",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "bad_words_ids",
    "min_length",
    "min_new_tokens",
    "suppress_tokens",
    "begin_suppress_tokens",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "sequence_bias",
    "min_p",
    "typical_p",
    "epsilon_cutoff",
    "eta_cutoff",
    "exponential_decay_length_penalty",
    "renormalize_logits",
    "guidance_scale",
    "watermarking_config",
    "remove_invalid_values",
)


@dataclass
class GenerationStats:
    """What the last :meth:`TransformersBackend.generate` call computed (for benchmarks and tests).

    Attributes:
        decode_loop: The path that ran: ``"cache"`` or ``"generate"``.
        prompt_tokens: Tokens of the prompts (padding excluded), each prompt counted once.
        generated_tokens: New tokens of the returned rows, each up to and including the token that
            finished it (an end-of-sequence token counts).
        prefill_forwards: Forward passes over prompts (the decode loop runs one per micro-batch).
        prefill_padded_tokens: Tokens the prefill computed, padding included.
        decode_batch_sizes: Rows of each decode forward pass, in order (decode loop only).
        token_ids: The new token ids of each returned candidate (``[prompt][candidate]``), up to and
            including the token that finished it.
        shared_prefix: Whether the candidates of a prompt read its keys and values once
            (:mod:`~hf_patchdist.generation.shared_prefix`) in at least one batch.
    """

    decode_loop: str = "cache"
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_forwards: int = 0
    prefill_padded_tokens: int = 0
    decode_batch_sizes: list[int] = field(default_factory=list)
    token_ids: list[list[list[int]]] = field(default_factory=list)
    shared_prefix: bool = False


class CacheLoopUnsupported(Exception):
    """The decode loop cannot drive this model (the message says why): fall back to ``generate``."""


def base_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (whose forward passes keyword arguments through)."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def forward_parameters(model: Any) -> set[str]:
    """Parameter names of the transformers model's ``forward`` (of its class: wrappers and hooks set on
    the instance keep the class's arguments)."""
    return set(inspect.signature(type(base_model(model)).forward).parameters)


def unsupported_reason(model: Any) -> str | None:
    """Why the decode loop cannot drive ``model``, decided before any forward pass; None when it can."""
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder model"
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and getattr(peft_config, "is_prompt_learning", False):
        return "prompt-learning PEFT adapter (virtual tokens)"
    names = forward_parameters(model)
    if "cache" not in names and "past_key_values" not in names:
        return "the model's forward takes no cache argument"
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        from transformers import GenerationConfig

        defaults = GenerationConfig()
        for name in UNSUPPORTED_GENERATION_OPTIONS:
            value = getattr(generation_config, name, None)
            if value is not None and value != getattr(defaults, name, None):
                return f"generation_config.{name}={value!r} is not applied by the decode loop"
    return None


def token_has_newline(tokenizer: Any, token: int, memo: dict[int, bool]) -> bool:
    """Whether the token's text holds a newline (each token id decoded once, remembered in ``memo``).

    As :class:`~hf_patchdist.generation.transformers_backend.FinalAnswerStoppingCriteria`: a
    final-answer line can only complete on such a token, so the whole row is decoded only then.
    """
    known = memo.get(token)
    if known is None:
        known = memo[token] = "\n" in tokenizer.decode([token])
    return known


def logits_warpers(settings: GenerationSettings) -> list[Any]:
    """The warpers ``generate`` applies for these settings, in its order (temperature, top-k, top-p;
    none for greedy)."""
    if not settings.do_sample:
        return []
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers: list[Any] = []
    if settings.temperature is not None and settings.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_k:
        warpers.append(TopKLogitsWarper(int(settings.top_k)))
    if settings.top_p is not None and settings.top_p < 1.0:
        warpers.append(TopPLogitsWarper(settings.top_p))
    return warpers


class DecodeLoop:
    """Prefill and decode batches of prompts over the model's KV cache (see the module docstring).

    Args:
        model: A causal LM (optionally with a LoRA adapter).
        tokenizer: Its tokenizer.
        stats: Where the forward passes are counted.
        newline_memo: Token id -> whether its text holds a newline (shared across calls).
    """

    def __init__(self, model: Any, tokenizer: Any, stats: GenerationStats, newline_memo: dict[int, bool]) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.stats = stats
        self.newline_memo = newline_memo
        names = forward_parameters(model)
        self.cache_argument = "cache" if "cache" in names else "past_key_values"
        self.keep_last_logits = "logits_to_keep" in names
        self.shared_prefix = shared_prefix_supported(base_model(model))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0

    def forward(self, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        """One forward pass; returns the last position's logits (float32) and the cache."""
        kwargs[self.cache_argument] = kwargs.pop("cache", None)
        output = self.model(**kwargs, use_cache=True, return_dict=True)
        cache = getattr(output, "cache", None)
        if cache is None:
            cache = getattr(output, "past_key_values", None)
        return output.logits[:, -1, :].to(dtype=torch.float32), cache

    @staticmethod
    def check_cache(cache: Any) -> None:
        """Raise :class:`CacheLoopUnsupported` unless rows of ``cache`` can be repeated and dropped."""
        try:
            from transformers import DynamicCache
            from transformers.cache_utils import DynamicLayer
        except ImportError as error:  # an older transformers without cache layers
            raise CacheLoopUnsupported(f"this transformers has no DynamicLayer ({error})") from error
        if cache is None:
            raise CacheLoopUnsupported("the model returned no cache")
        if not isinstance(cache, DynamicCache):
            raise CacheLoopUnsupported(f"cache of type {type(cache).__name__} (not a DynamicCache)")
        for name in ("batch_select_indices", "batch_repeat_interleave"):
            if not callable(getattr(cache, name, None)):
                raise CacheLoopUnsupported(f"the cache has no {name}")
        kinds = {type(layer).__name__ for layer in cache.layers if type(layer) is not DynamicLayer}
        if kinds:
            raise CacheLoopUnsupported(f"cache layers of type {', '.join(sorted(kinds))} (only full-attention DynamicLayer)")

    def micro_batches(self, encoded: Sequence[Sequence[int]]) -> list[list[int]]:
        """Split prompts sorted by decreasing length into prefill micro-batches of similar length."""
        return length_groups(
            [len(ids) for ids in encoded], max_padding=PREFILL_PADDING_WASTE, max_tokens=PREFILL_TOKEN_BUDGET
        )

    def prefill(self, encoded: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, Any, list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """Prefill prompts sorted by decreasing length, in micro-batches of similar length.

        Returns the last-position logits, the cache of the last micro-batch (the container the
        decode steps use; :meth:`decode_batch` gives it new layers), each layer's keys and values
        over all the prompts, left-padded, and their attention mask (prompt padding is 0).
        """
        width = len(encoded[0])
        logits_parts: list[torch.Tensor] = []
        layer_parts: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        cache = None
        for group in self.micro_batches(encoded):
            longest = len(encoded[group[0]])
            input_ids = torch.full((len(group), longest), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(group), longest), dtype=torch.long)
            for row, index in enumerate(group):
                input_ids[row, longest - len(encoded[index]) :] = torch.tensor(encoded[index], dtype=torch.long)
                mask[row, longest - len(encoded[index]) :] = 1
            input_ids, mask = input_ids.to(device), mask.to(device)
            # As generate: positions count real tokens; padding sits at position 0 (masked out).
            positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
            extra = {"logits_to_keep": 1} if self.keep_last_logits else {}
            logits, cache = self.forward(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=None, **extra)
            self.stats.prefill_forwards += 1
            self.stats.prefill_padded_tokens += input_ids.numel()
            self.check_cache(cache)
            logits_parts.append(logits)
            # Left-pad this micro-batch's keys and values to the batch's width (masked out).
            pad = (0, 0, width - longest, 0)
            layer_parts.append([
                (torch.nn.functional.pad(layer.keys, pad), torch.nn.functional.pad(layer.values, pad))
                for layer in cache.layers
            ])
        layers = [
            (torch.cat([part[i][0] for part in layer_parts]), torch.cat([part[i][1] for part in layer_parts]))
            for i in range(len(layer_parts[0]))
        ]
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            mask[row, width - len(ids) :] = 1
        return torch.cat(logits_parts), cache, layers, mask.to(device)

    def decode_batch(
        self,
        encoded: Sequence[Sequence[int]],
        limits: Sequence[int],
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None,
        eos: set[int],
        device: torch.device,
    ) -> list[tuple[list[int], bool]]:
        """Prefill once per prompt, expand to ``num_candidates`` rows each, decode until every row finished.

        Args:
            encoded: Prompt token ids, sorted by decreasing length.
            limits: New-token limit of each prompt.

        Returns:
            Each row's new tokens and whether an end-of-sequence token ended it, prompt by prompt,
            ``num_candidates`` rows each.
        """
        logits, cache, layers, mask = self.prefill(encoded, device)
        rows = logits.shape[0] * num_candidates
        positions = (mask.sum(-1, keepdim=True) - 1).repeat_interleave(num_candidates, dim=0)  # each row's last position
        logits = logits.repeat_interleave(num_candidates, dim=0)
        shared = None
        if num_candidates > 1 and self.shared_prefix:
            # The K candidates of a prompt read its keys and values once (see shared_prefix).
            layer_class = shared_layer_class()
            cache.layers = [layer_class(k, v, rows, max(limits)) for k, v in layers]
            shared = SharedPrefixState(cache, mask, num_candidates)
            mask = None
            self.stats.shared_prefix = True
        else:
            layer_class = reserved_layer_class()
            cache.layers = [layer_class(k, v, mask.shape[1] + max(limits)) for k, v in layers]
            if num_candidates > 1:
                cache.batch_repeat_interleave(num_candidates)
                mask = mask.repeat_interleave(num_candidates, dim=0)
        del layers
        with self._attention(shared is not None):
            return self._decode(logits, cache, mask, positions, shared, limits, num_candidates, settings, stop, eos, device)

    @contextlib.contextmanager
    def _attention(self, shared: bool) -> Iterator[None]:
        """Switch the model to shared-prefix attention for the decode steps (restored afterwards)."""
        if not shared:
            yield
            return
        register_attention()
        target = base_model(self.model)
        previous = target.config._attn_implementation
        target.set_attn_implementation(SHARED_ATTENTION)
        if target.config._attn_implementation != SHARED_ATTENTION:  # the decode steps would read half the cache
            target.set_attn_implementation(previous)
            raise CacheLoopUnsupported(f"{type(target).__name__} did not switch to shared-prefix attention")
        try:
            yield
        finally:
            target.set_attn_implementation(previous)

    def _decode(
        self,
        logits: torch.Tensor,
        cache: Any,
        mask: torch.Tensor | None,
        positions: torch.Tensor,
        shared: SharedPrefixState | None,
        limits: Sequence[int],
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None,
        eos: set[int],
        device: torch.device,
    ) -> list[tuple[list[int], bool]]:
        rows = logits.shape[0]
        row_limit = [limits[row // num_candidates] for row in range(rows)]
        warpers = logits_warpers(settings)
        tokens: list[list[int]] = [[] for _ in range(rows)]
        ended = [False] * rows
        active = list(range(rows))  # the row of each slot still in the batch
        extra = {SHARED_STATE_ARGUMENT: shared} if shared is not None else {}
        while True:
            for warper in warpers:
                logits = warper(None, logits)
            if settings.do_sample:
                next_tokens = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1).squeeze(1)
            else:
                next_tokens = torch.argmax(logits, dim=-1)
            keep: list[int] = []
            for slot, (row, token) in enumerate(zip(active, next_tokens.tolist())):
                tokens[row].append(token)
                if token in eos:
                    ended[row] = True
                    continue
                if stop is not None and token_has_newline(self.tokenizer, token, self.newline_memo):
                    if stop(self.tokenizer.decode(tokens[row], skip_special_tokens=True)) is not None:
                        continue
                if len(tokens[row]) >= row_limit[row]:
                    continue
                keep.append(slot)
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, dtype=torch.long, device=device)
                if shared is not None:
                    shared.select_rows(index)
                else:
                    cache.batch_select_indices(index)
                    mask = mask[index]
                positions, next_tokens = positions[index], next_tokens[index]
                active = [active[slot] for slot in keep]
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            positions = positions + 1
            self.stats.decode_batch_sizes.append(len(active))
            logits, cache = self.forward(
                input_ids=next_tokens[:, None], attention_mask=mask, position_ids=positions, cache=cache, **extra
            )
        self.stats.generated_tokens += sum(len(t) for t in tokens)
        return list(zip(tokens, ended))
