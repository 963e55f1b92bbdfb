"""Attention over a prompt shared by K candidates: the prompt's keys and values are read once, not K times.

With K candidates per prompt, a decode step's attention reads the whole cache of every row: K copies
of the same prompt keys and values. On a CPU that read is the cost of decoding (SmolLM2-135M,
32 prompts x 8 candidates, ~400-token prompts: attention was 55% of a decode step). Here a layer's
cache holds the prompt part once per prompt (:class:`SharedPrefixLayer`) and the generated part per
row; :func:`shared_prefix_attention`, registered with transformers' ``AttentionInterface``, attends
each row's query to its prompt's part (all candidates of a prompt in one matrix product) and to its
own generated part, and merges the two softmaxes exactly (log-sum-exp).

The decode loop switches the model to this attention only for the decode steps of a batch with
K > 1, and only for architectures whose attention is plain scaled dot-product attention
(:func:`shared_prefix_supported`); everything else keeps the expanded cache.
"""

from __future__ import annotations

from typing import Any

import torch

from .cache_layers import reserved_layer_class

ATTENTION_NAME = "hf_patchdist_shared_prefix"
STATE_ARGUMENT = "hf_patchdist_shared_prefix"

# Architectures whose attention is scaled dot-product attention over (GQA) keys and values, with no
# soft-capping, sinks or biases added in the attention function.
SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "granite", "olmo2", "smollm3"})


def shared_prefix_supported(model: Any) -> bool:
    """Whether the decode loop may switch ``model`` (a transformers model) to shared-prefix attention."""
    config = getattr(model, "config", None)
    return (
        getattr(config, "model_type", None) in SUPPORTED_MODEL_TYPES
        and getattr(config, "_attn_implementation", None) in ("sdpa", "eager")
        and getattr(config, "attn_logit_softcapping", None) is None
        and not getattr(config, "use_sliding_window", False)
        and callable(getattr(model, "set_attn_implementation", None))
        and bool(getattr(model, "_can_set_attn_implementation", lambda: False)())
    )


def register_attention() -> None:
    from transformers import AttentionInterface

    if ATTENTION_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION_NAME, shared_prefix_attention)


class SharedPrefixState:
    """Which prompt and candidate slot each row of the decode batch belongs to.

    Args:
        cache: The cache whose layers are :class:`SharedPrefixLayer`.
        prompt_mask: ``(P, Lp)`` attention mask of the prompts (0 on padding).
        num_candidates: K, the candidate slots per prompt.
    """

    def __init__(self, cache: Any, prompt_mask: torch.Tensor, num_candidates: int) -> None:
        self.cache = cache
        self.prompt_mask = prompt_mask.bool()
        self.num_candidates = num_candidates
        prompts = prompt_mask.shape[0]
        device = prompt_mask.device
        self.prompt_of_row = torch.arange(prompts, device=device).repeat_interleave(num_candidates)
        self.slot_of_row = torch.arange(num_candidates, device=device).repeat(prompts)

    @property
    def num_prompts(self) -> int:
        return self.prompt_mask.shape[0]

    def select_rows(self, indices: torch.Tensor) -> None:
        """Keep the rows ``indices`` (in order); drop prompts left without rows from every layer."""
        self.cache.batch_select_indices(indices)
        self.prompt_of_row = self.prompt_of_row[indices]
        self.slot_of_row = self.slot_of_row[indices]
        kept = torch.unique(self.prompt_of_row)  # sorted
        if kept.numel() < self.num_prompts:
            for layer in self.cache.layers:
                layer.select_prompts(kept)
            self.prompt_mask = self.prompt_mask[kept]
            remap = torch.full((int(kept.max()) + 1,), -1, dtype=torch.long, device=kept.device)
            remap[kept] = torch.arange(kept.numel(), device=kept.device)
            self.prompt_of_row = remap[self.prompt_of_row]


def shared_layer_class() -> type:
    """The cache layer class (built on first use: it subclasses transformers' ``DynamicLayer``)."""
    global _SHARED_LAYER
    if _SHARED_LAYER is not None:
        return _SHARED_LAYER

    class SharedPrefixLayer(reserved_layer_class()):
        """Prompt keys/values once per prompt, generated keys/values per row in reserved room.

        ``keys``/``values`` (what ``update`` returns to the attention) are the generated part only;
        the sequence length counts both parts.
        """

        def __init__(self, prompt_keys: torch.Tensor, prompt_values: torch.Tensor, rows: int, capacity: int) -> None:
            super(reserved_layer_class(), self).__init__()  # DynamicLayer's: the buffers start empty here
            self.device = prompt_keys.device
            self.prompt_keys = prompt_keys
            self.prompt_values = prompt_values
            shape = (rows, prompt_keys.shape[1], max(capacity, 1), prompt_keys.shape[-1])
            self._key_buffer = prompt_keys.new_empty(shape)
            self._value_buffer = prompt_values.new_empty(shape)
            self.length = 0
            self.is_initialized = True
            self._refresh()

        def get_seq_length(self) -> int:
            return self.prompt_keys.shape[-2] + self.length

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.get_seq_length() + query_length, 0

        def batch_repeat_interleave(self, repeats: int) -> None:
            raise NotImplementedError("a shared-prefix cache is built with its candidates")

        def select_prompts(self, indices: torch.Tensor) -> None:
            self.prompt_keys = self.prompt_keys[indices]
            self.prompt_values = self.prompt_values[indices]

    _SHARED_LAYER = SharedPrefixLayer
    return SharedPrefixLayer


_SHARED_LAYER: type | None = None


def _softmax_parts(scores: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row maximum, sum of exponentials and unnormalised output of a (masked) softmax attention."""
    maximum = scores.amax(-1, keepdim=True).clamp(min=torch.finfo(scores.dtype).min)
    weights = torch.exp(scores - maximum)
    total = weights.sum(-1, keepdim=True)
    output = torch.matmul(weights.to(values.dtype), values).float()
    return maximum, total, output


def shared_prefix_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of one new token per row over its prompt's shared keys/values and its own generated ones.

    ``query`` is ``(R, H, 1, D)``; ``key``/``value`` are the rows' generated part ``(R, Hkv, Lg, D)``;
    the prompt part comes from the layer of ``module.layer_idx`` in the state passed as the keyword
    argument ``hf_patchdist_shared_prefix``. Returns ``(R, 1, H, D)`` as transformers' attention
    functions do.
    """
    state: SharedPrefixState = kwargs[STATE_ARGUMENT]
    layer = state.cache.layers[module.layer_idx]
    rows, heads, query_length, dim = query.shape
    if query_length != 1:
        raise ValueError("shared-prefix attention decodes one token per row")
    kv_heads = key.shape[1]
    group = heads // kv_heads  # query head h reads key/value head h // group (transformers' repeat_kv)
    scale = scaling if scaling is not None else dim**-0.5
    packed = query.reshape(rows, kv_heads, group, dim)

    # Prompt part: the queries of a prompt's K candidate slots in one (K * group, Lp) product.
    prompts, slots = state.num_prompts, state.num_candidates
    dense = packed.new_zeros((prompts, slots, kv_heads, group, dim))
    dense[state.prompt_of_row, state.slot_of_row] = packed
    dense = dense.permute(0, 2, 1, 3, 4).reshape(prompts, kv_heads, slots * group, dim)
    scores = torch.matmul(dense, layer.prompt_keys.transpose(-1, -2)).float() * scale
    scores = scores.masked_fill(~state.prompt_mask[:, None, None, :], float("-inf"))
    prompt_parts = _softmax_parts(scores, layer.prompt_values)

    def per_row(tensor: torch.Tensor) -> torch.Tensor:
        last = tensor.shape[-1]
        tensor = tensor.reshape(prompts, kv_heads, slots, group, last).permute(0, 2, 1, 3, 4)
        return tensor[state.prompt_of_row, state.slot_of_row]  # (R, Hkv, group, last)

    max_p, sum_p, out_p = (per_row(t) for t in prompt_parts)
    # Generated part: every row's own tokens (no padding: all rows started together).
    scores = torch.matmul(packed, key.transpose(-1, -2)).float() * scale
    max_g, sum_g, out_g = _softmax_parts(scores, value)
    maximum = torch.maximum(max_p, max_g)
    weight_p, weight_g = torch.exp(max_p - maximum), torch.exp(max_g - maximum)
    output = (out_p * weight_p + out_g * weight_g) / (sum_p * weight_p + sum_g * weight_g)
    return output.to(query.dtype).reshape(rows, 1, heads, dim), None
