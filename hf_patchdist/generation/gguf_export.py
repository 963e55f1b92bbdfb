"""Write a loaded Llama-family transformers model as a GGUF file that OpenVINO GenAI's GGUF reader builds a model from.

This is how :class:`~hf_patchdist.generation.openvino_backend.OpenVINOBackend` gets an OpenVINO model without
optimum-intel (whose 2.2 release pins transformers < 5.6). What the reader of openvino-genai 2026.4 expects,
found by reading its ``gguf_utils`` sources and checked on SmolLM2 and on the tests' tiny Llama:

* llama.cpp's tensor names (``blk.<i>.attn_q.weight``...; ``gguf.get_tensor_name_map``) and its q/k row
  order: llama.cpp's converter permutes the query and key rows for its interleaved rotary layout, and the reader
  undoes that permutation for the ``llama`` architecture, so we apply it as llama.cpp does;
* linear weights in F16, Q8_0, Q4_0, Q4_1, Q4_K or Q6_K (F32 linear weights are refused: "Unsupported
  quantization type"); embeddings and norms may stay F32. F16 weights computed in float32 give the
  transformers float32 greedy tokens on the tests and on SmolLM2;
* the tokenizer's metadata (the reader fails with ``map::at`` without it), even though the backend feeds
  token ids and decodes with the transformers tokenizer: a byte-level BPE vocabulary and its merges.

``head_dim`` must be ``hidden_size / num_attention_heads`` and there is no rope scaling (the reader derives
the head size and builds plain rotary embeddings): other configurations are refused with the reason.
"""

from __future__ import annotations

import json
import os
from typing import Any


GGUF_WEIGHT_TYPES = ("f16", "q8_0")
"""Types of the linear weights in the written file: ``"f16"`` (default; computed in float32 when asked) or ``"q8_0"``."""

SUPPORTED_MODEL_TYPES = ("llama",)


def unsupported_reason(config: Any) -> str | None:
    """Why the GGUF reader could not rebuild a model with this config, or None when it can."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model_type {model_type!r} is not one of {', '.join(SUPPORTED_MODEL_TYPES)}"
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    if head_dim * heads != config.hidden_size:
        return f"head_dim {head_dim} x {heads} heads != hidden_size {config.hidden_size}"
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        return f"rope type {rope_type!r} (only plain rotary embeddings are rebuilt)"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "attention or MLP biases"
    return None


def rope_theta(config: Any) -> float:
    """The rotary base of a config (``rope_parameters`` in transformers 5, ``rope_theta`` before)."""
    parameters = getattr(config, "rope_parameters", None) or {}
    return float(parameters.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def permute_for_llama_cpp(weight: Any, heads: int) -> Any:
    """llama.cpp's permutation of query/key rows (``convert_hf_to_gguf.py``): each head's two halves interleaved."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def tokenizer_vocabulary(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens, GGUF token types and BPE merges of a byte-level BPE transformers tokenizer, for ``vocab_size`` ids."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"{type(tokenizer).__name__} has no fast (tokenizers) backend: its BPE merges cannot be written to GGUF.")
    model = json.loads(backend.to_str())["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"The tokenizer is a {model.get('type')!r} model; the GGUF export writes byte-level BPE tokenizers only.")
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in model.get("merges", [])]
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    special = set(tokenizer.all_special_ids) | {i for i, added in tokenizer.added_tokens_decoder.items() if added.special}
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in by_id:  # a model's embedding rows beyond the tokenizer's vocabulary
            tokens.append(f"[PAD{index}]")
            types.append(int(gguf.TokenType.UNUSED))
        else:
            tokens.append(by_id[index])
            types.append(int(gguf.TokenType.CONTROL if index in special else gguf.TokenType.NORMAL))
    return tokens, types, merges


def write_gguf(model: Any, tokenizer: Any, path: str | os.PathLike, *, weight_type: str = "f16") -> None:
    """Write ``model`` (a loaded Llama-family ``*ForCausalLM``, any adapter already merged) and its tokenizer to ``path``.

    Args:
        model: The transformers model (its weights are read in float32).
        tokenizer: Its transformers tokenizer (byte-level BPE: the metadata the reader requires).
        path: The ``.gguf`` file to write.
        weight_type: Type of the linear weights, one of :data:`GGUF_WEIGHT_TYPES`; embeddings and norms stay float32.

    Raises:
        ValueError: The model or tokenizer is of a kind the reader cannot rebuild (the reason is in the message).
    """
    import gguf
    import numpy as np

    if weight_type not in GGUF_WEIGHT_TYPES:
        raise ValueError(f"weight_type must be one of {', '.join(GGUF_WEIGHT_TYPES)}, got {weight_type!r}")
    config = model.config
    reason = unsupported_reason(config)
    if reason is not None:
        raise ValueError(f"OpenVINO GenAI's GGUF reader cannot rebuild this model: {reason}.")
    tokens, token_types, merges = tokenizer_vocabulary(tokenizer, config.vocab_size)
    quantized = weight_type == "q8_0"
    writer = gguf.GGUFWriter(os.fspath(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(str(getattr(config, "_name_or_path", "") or "model"))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quantized else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    for kind, token_id in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id), ("pad", tokenizer.pad_token_id), ("unk", tokenizer.unk_token_id)):
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(int(token_id))
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        writer.add_chat_template(tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue  # the reader uses the embeddings as the output head when output.weight is absent
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"No GGUF name for the tensor {name!r} of this {config.model_type} model.")
        array = tensor.detach().float().cpu().numpy()
        if name.endswith("q_proj.weight"):
            array = permute_for_llama_cpp(array, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            array = permute_for_llama_cpp(array, config.num_key_value_heads)
        linear = array.ndim == 2 and not gguf_name.startswith(("token_embd", "output."))
        if not linear:
            writer.add_tensor(gguf_name, np.ascontiguousarray(array, dtype=np.float32))
        elif quantized:
            data = gguf.quants.quantize(np.ascontiguousarray(array), gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(gguf_name, data, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(gguf_name, np.ascontiguousarray(array, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
