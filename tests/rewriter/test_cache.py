"""The on-disk patch cache (`hf_patchdist.rewriter.cache`): reused for the same rewriter, invalidated when what
decides the rewrites changes, keyed by `Rewriter.fingerprint()`."""

from __future__ import annotations

import pytest
import torch
from conftest import GSM8K_ROWS, good_rewrite_for, make_dataset

from hf_patchdist.generation import StaticBackend
from hf_patchdist.rewriter import Rewriter, RewriterConfig

ROWS = GSM8K_ROWS[:2]


@pytest.fixture
def adapter_dir(tiny_model_dir, tmp_path):
    """A rewriter folder with a random, non-zero LoRA adapter on the tiny model."""
    from peft import LoraConfig, get_peft_model

    from hf_patchdist.models import load_model_and_tokenizer

    folder = tmp_path / "adapter-rewriter"
    model, _ = load_model_and_tokenizer(tiny_model_dir, dtype="float32", device="cpu")
    torch.manual_seed(1)
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).save_pretrained(folder)
    RewriterConfig(base_model=tiny_model_dir, has_adapter=True).save(folder)
    return folder


def _options():
    return {"backend": StaticBackend(good_rewrite_for), "show_progress": False, "dtype": "float32", "device": "cpu"}


def test_changed_adapter_weights_in_the_same_folder_invalidate_the_cache(adapter_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    dataset, cache = make_dataset("plain", ROWS), tmp_path / "cache"
    first = Rewriter.from_pretrained(adapter_dir, **_options()).patch_dataset(dataset, cache_dir=cache)
    again = Rewriter.from_pretrained(adapter_dir, **_options()).patch_dataset(dataset, cache_dir=cache)
    assert (first.from_cache, again.from_cache) == (False, True) and again.key == first.key

    weights_file = adapter_dir / "adapter_model.safetensors"
    weights = load_file(str(weights_file))
    name = sorted(weights)[0]
    weights[name] = weights[name].clone()
    weights[name][0, 0] += 1.0  # one weight of the adapter changes; the folder, config and file name stay
    save_file(weights, str(weights_file), metadata={"format": "pt"})
    changed = Rewriter.from_pretrained(adapter_dir, **_options()).patch_dataset(dataset, cache_dir=cache)
    assert not changed.from_cache and changed.key != first.key
    assert changed.rewriter_fingerprint != first.rewriter_fingerprint


def test_a_loaded_model_changed_in_memory_invalidates_the_cache(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    dataset, cache = make_dataset("plain", ROWS), tmp_path / "cache"
    rewriter = Rewriter(model, tokenizer, backend=StaticBackend(good_rewrite_for), show_progress=False)
    first = rewriter.patch_dataset(dataset, cache_dir=cache)
    again = rewriter.patch_dataset(dataset, cache_dir=cache)
    assert (first.from_cache, again.from_cache) == (False, True) and again.key == first.key

    weight = model.model.layers[0].mlp.down_proj.weight
    original = weight[0, 0].item()
    with torch.no_grad():
        weight[0, 0] = original + 0.5  # one weight, in memory: same object, same name, same config
    changed = rewriter.patch_dataset(dataset, cache_dir=cache)
    assert not changed.from_cache and changed.key != first.key
    assert changed.dataset["patch_nll_original"] != first.dataset["patch_nll_original"], "the new weights score differently"

    with torch.no_grad():
        weight[0, 0] = original
    restored = rewriter.patch_dataset(dataset, cache_dir=cache)
    assert restored.from_cache and restored.key == first.key, "the same weights give the same key"

    fingerprint = rewriter.fingerprint()
    model.to(torch.bfloat16)
    assert rewriter.fingerprint() != fingerprint, "another dtype is another model"


def test_loading_an_adapter_onto_a_given_model_keeps_the_key(adapter_dir, tiny_model, tmp_path):
    """The base weights hash the same before and after PEFT wraps the model with the adapter."""
    model, tokenizer = tiny_model
    dataset, cache = make_dataset("plain", ROWS), tmp_path / "cache"
    rewriter = Rewriter.from_pretrained(adapter_dir, model=model, tokenizer=tokenizer, backend=StaticBackend(good_rewrite_for), show_progress=False)
    before = rewriter.fingerprint()
    first = rewriter.patch_dataset(dataset, cache_dir=cache)
    assert getattr(rewriter.model, "peft_config", None), "the adapter is loaded now"
    assert rewriter.fingerprint() == before == first.rewriter_fingerprint
    assert rewriter.patch_dataset(dataset, cache_dir=cache).from_cache


def test_shards_are_whole_batches_in_order():
    from hf_patchdist.rewriter.sharding import shard_bounds

    assert [shard_bounds(7, 2, 2, rank) for rank in (0, 1)] == [(0, 4), (4, 7)]
    assert [shard_bounds(10, 2, 3, rank) for rank in (0, 1, 2)] == [(0, 4), (4, 8), (8, 10)]
    assert [shard_bounds(3, 4, 2, rank) for rank in (0, 1)] == [(0, 3), (3, 3)], "a process may get nothing"
    for rows, batch, processes in ((7, 2, 2), (100, 16, 8), (5, 1, 3), (0, 4, 2)):
        bounds = [shard_bounds(rows, batch, processes, rank) for rank in range(processes)]
        assert bounds[0][0] == 0 and bounds[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:])), "contiguous, no row twice"
        assert all(start % batch == 0 or start == rows for start, _ in bounds), "shards start on a one-process batch boundary"


def test_the_key_holds_the_gate_version(tiny_model_dir, monkeypatch):
    # A gate whose checks changed under an unchanged configuration must not reuse sets patched by the old one.
    from hf_patchdist.rewriter import cache
    from hf_patchdist.verifiers import GATE_VERSION

    assert GATE_VERSION >= 2 and cache.CACHE_FORMAT_VERSION >= 2, "bumped with the gate of issue 14"
    dataset = make_dataset("plain", ROWS)
    rewriter = Rewriter(tiny_model_dir, **_options())
    key = cache.patch_cache_key(dataset, rewriter, "fingerprint")
    monkeypatch.setattr(cache, "GATE_VERSION", GATE_VERSION + 1)
    assert cache.patch_cache_key(dataset, rewriter, "fingerprint") != key
