"""VLLMBackend against a stand-in ``vllm`` module that records what it is called with (no GPU, no vLLM)."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from types import SimpleNamespace

import pytest
from conftest import GOOD_REWRITES, GSM8K_ROWS, make_dataset

from hf_patchdist.generation import GenerationSettings
from hf_patchdist.generation.vllm_backend import VLLMBackend, vllm_lora_rank
from hf_patchdist.import_utils import _is_package_available
from hf_patchdist.rewriter import Rewriter
from hf_patchdist.verifiers import get_verifier


class FakeTokenizer:
    """Wraps the real tokenizer; like Llama's, it writes a BOS id first when asked for special tokens."""

    BOS = 0  # <|endoftext|>: not the <|im_start|> the template writes first

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, texts, add_special_tokens=True):
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return {"input_ids": [([self.BOS] if add_special_tokens else []) + list(row) for row in ids]}


class FakeLLM:
    """Records its constructor and generate arguments; answers with scripted (text, finish_reason) pairs."""

    instances: list = []
    script: list = []  # (text, finish_reason) handed out in turn
    tokenizer = None

    def __init__(self, model, **kwargs):
        self.model, self.kwargs, self.calls = model, kwargs, []
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return FakeLLM.tokenizer

    def generate(self, prompts, sampling_params, lora_request=None, use_tqdm=True):
        token_ids = [p["prompt_token_ids"] if isinstance(p, dict) else FakeLLM.tokenizer([p])["input_ids"][0] for p in prompts]
        self.calls.append({"token_ids": token_ids, "params": sampling_params, "lora": lora_request})
        outputs, position = [], 0
        for params in sampling_params:
            candidates = []
            for _ in range(params.n):
                text, reason = FakeLLM.script[position % len(FakeLLM.script)]
                position += 1
                candidates.append(SimpleNamespace(text=text, finish_reason=reason))
            outputs.append(SimpleNamespace(outputs=candidates))
        return outputs


class SamplingParams(SimpleNamespace):
    def __init__(self, n=1, max_tokens=16, temperature=1.0, top_p=1.0, top_k=0, stop=None):
        super().__init__(n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k, stop=stop)


class LoRARequest(SimpleNamespace):
    def __init__(self, name, lora_id, path):
        super().__init__(name=name, lora_id=lora_id, path=path)


def _module(name, **attributes):
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    module.__dict__.update(attributes)
    return module


@pytest.fixture
def fake_vllm(monkeypatch, tiny_model):
    _, tokenizer = tiny_model
    FakeLLM.instances, FakeLLM.tokenizer = [], FakeTokenizer(tokenizer)
    FakeLLM.script = [("done", "stop")]
    request = _module("vllm.lora.request", LoRARequest=LoRARequest)
    lora = _module("vllm.lora", request=request)
    vllm = _module("vllm", LLM=FakeLLM, SamplingParams=SamplingParams, lora=lora)
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)
    _is_package_available.cache_clear()
    yield FakeLLM
    _is_package_available.cache_clear()


def _adapter(folder, rank, weights=b"weights"):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return str(folder)


def _chat(tokenizer, question):
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)


def test_rounds_the_adapter_rank_up_to_one_vllm_accepts(fake_vllm, tmp_path):
    assert [vllm_lora_rank(r) for r in (1, 4, 16, 17, 64, 300)] == [1, 8, 16, 32, 64, 320]
    with pytest.raises(ValueError, match="up to rank 512"):
        vllm_lora_rank(1024)
    VLLMBackend("base", adapter=_adapter(tmp_path / "r64", 64))
    VLLMBackend("base", adapter=_adapter(tmp_path / "r12", 12))
    VLLMBackend("base")
    with_adapter, small, without = (llm.kwargs for llm in fake_vllm.instances)
    assert with_adapter["enable_lora"] and with_adapter["max_lora_rank"] == 64
    assert small["max_lora_rank"] == 16
    assert "enable_lora" not in without and "max_lora_rank" not in without


def test_leaves_gpu_memory_for_the_scoring_copy(fake_vllm):
    VLLMBackend("base")
    VLLMBackend("base", gpu_memory_utilization=0.85)
    assert [llm.kwargs["gpu_memory_utilization"] for llm in fake_vllm.instances] == [0.6, 0.85]


def test_prompts_go_as_token_ids_without_a_second_bos(fake_vllm, tiny_model):
    _, tokenizer = tiny_model
    prompts = [_chat(tokenizer, "What is 2 + 2?"), _chat(tokenizer, "Hi")]
    VLLMBackend("base").generate(prompts, num_candidates=1, settings=GenerationSettings())
    sent = fake_vllm.instances[0].calls[0]["token_ids"]
    assert sent == [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert all(ids[0] != FakeTokenizer.BOS for ids in sent)


def test_cuts_at_the_final_answer_line_and_sets_truncation(fake_vllm):
    fake_vllm.script = [
        ("So 48 + 24 = 72.\n#### 72\nNow another question: what is", "length"),  # complete once cut
        ("So 48 + 24 = 72 and then some more", "length"),  # really truncated
        ("The answer is 72.", "stop"),  # ended by itself
    ]
    stop = get_verifier("math").final_answer_end
    backend = VLLMBackend("base", adapter=None)
    (cut, truncated, ended), = backend.generate(["p"], num_candidates=3, settings=GenerationSettings(), stop=stop)
    assert (cut.text, cut.truncated) == ("So 48 + 24 = 72.\n#### 72\n", False)
    assert (truncated.text, truncated.truncated) == ("So 48 + 24 = 72 and then some more", True)
    assert (ended.text, ended.truncated) == ("The answer is 72.", False)


def test_per_prompt_token_limits_and_greedy_settings(fake_vllm, tmp_path):
    adapter = _adapter(tmp_path / "a", 8)
    backend = VLLMBackend("base", adapter=adapter)
    results = backend.generate(["a", "b"], num_candidates=2, settings=GenerationSettings(), max_new_tokens=[30, 7])
    call = fake_vllm.instances[0].calls[0]
    assert [p.max_tokens for p in call["params"]] == [30, 7]
    assert [(p.n, p.temperature) for p in call["params"]] == [(2, 0.0), (2, 0.0)]
    assert [p.top_k for p in call["params"]] == [-1, -1], "vLLM's 'every token' when top_k is unset"
    backend.generate(["a"], num_candidates=3, settings=GenerationSettings(do_sample=True, top_k=20))
    assert fake_vllm.instances[0].calls[1]["params"][0].top_k == 20
    assert call["lora"].path == adapter
    assert [len(r) for r in results] == [2, 2]
    with pytest.raises(ValueError, match="1 limits for 2 prompts"):
        backend.generate(["a", "b"], num_candidates=1, settings=GenerationSettings(), max_new_tokens=[3])


def test_two_adapters_never_share_a_fingerprint(fake_vllm, tiny_model_dir, tmp_path):
    first = VLLMBackend(tiny_model_dir, adapter=_adapter(tmp_path / "one", 64, b"one"))
    second = VLLMBackend(tiny_model_dir, adapter=_adapter(tmp_path / "two", 64, b"two"))
    same_weights = VLLMBackend(tiny_model_dir, adapter=_adapter(tmp_path / "three", 64, b"one"))
    other_setting = VLLMBackend(tiny_model_dir, adapter=_adapter(tmp_path / "four", 64, b"one"), max_model_len=512)
    prints = [Rewriter(tiny_model_dir, backend=b).fingerprint() for b in (first, second, same_weights, other_setting)]
    assert prints[0] != prints[1], "another adapter is another rewriter"
    assert prints[0] == prints[2], "the same weights in another folder are the same rewriter"
    assert prints[0] != prints[3], "other vLLM settings may generate otherwise"


def test_a_rewriter_on_vllm_keeps_rewrites_that_run_past_the_final_line(fake_vllm, tiny_model):
    model, tokenizer = tiny_model
    fake_vllm.script = [(GOOD_REWRITES[72] + "\nQuestion: what is 2 + 2?\nAnswer: 4", "length")]
    rewriter = Rewriter(model, tokenizer, backend=VLLMBackend("base"), show_progress=False)
    patched = make_dataset("plain", GSM8K_ROWS[:1]).map(rewriter, batched=True)
    assert patched["patch_source"] == ["rewrite"], patched["patch_reason"]
    assert patched["answer"] == [GOOD_REWRITES[72]]
