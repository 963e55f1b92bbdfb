"""write_gguf: what the GGUF file holds (tensor types, q/k rows, tokenizer) and the models it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from hf_patchdist.generation.gguf_export import permute_for_llama_cpp, unsupported_reason, write_gguf


def test_file_holds_f16_linear_weights_permuted_qk_and_the_tokenizer(tiny_model, tmp_path):
    import gguf

    model, tokenizer = tiny_model
    path = tmp_path / "tiny.gguf"
    write_gguf(model, tokenizer, path)
    reader = gguf.GGUFReader(path)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    assert tensors["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert "output.weight" not in tensors  # tied: the reader uses the embeddings
    q_proj = model.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    expected = permute_for_llama_cpp(q_proj, model.config.num_attention_heads).astype(np.float16)
    assert np.array_equal(np.asarray(tensors["blk.0.attn_q.weight"].data).reshape(expected.shape), expected)
    assert not np.array_equal(expected, q_proj.astype(np.float16))  # the permutation moved rows
    tokens = reader.fields["tokenizer.ggml.tokens"]
    assert len(tokens.data) == model.config.vocab_size
    assert reader.fields["tokenizer.ggml.eos_token_id"].contents() == tokenizer.eos_token_id
    assert len(reader.fields["tokenizer.ggml.merges"].data) > 1000


def test_q8_0_weights(tiny_model, tmp_path):
    import gguf

    model, tokenizer = tiny_model
    write_gguf(model, tokenizer, tmp_path / "tiny.gguf", weight_type="q8_0")
    tensors = {tensor.name: tensor for tensor in gguf.GGUFReader(tmp_path / "tiny.gguf").tensors}
    assert tensors["blk.1.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    with pytest.raises(ValueError, match="weight_type must be one of f16, q8_0"):
        write_gguf(model, tokenizer, tmp_path / "other.gguf", weight_type="q4_0")


def test_refuses_what_the_reader_cannot_rebuild(tiny_model, tmp_path):
    from transformers import LlamaConfig, Qwen2Config

    model, tokenizer = tiny_model
    assert unsupported_reason(model.config) is None
    assert "model_type 'qwen2'" in unsupported_reason(Qwen2Config())
    assert "head_dim 16" in unsupported_reason(LlamaConfig(hidden_size=32, num_attention_heads=4, head_dim=16))
    scaled = LlamaConfig(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    assert "rope type 'linear'" in unsupported_reason(scaled)
    model.config.attention_bias = True
    try:
        with pytest.raises(ValueError, match="cannot rebuild this model: attention or MLP biases"):
            write_gguf(model, tokenizer, tmp_path / "biased.gguf")
    finally:
        model.config.attention_bias = False
