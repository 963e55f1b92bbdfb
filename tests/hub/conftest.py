"""Fixtures of the Hub tests (the loopback Hub itself is `tests/fixtures/hub_server.py`)."""

from __future__ import annotations

import pytest

from hf_patchdist.rewriter import RewriterConfig

from .helpers import GENERATION


@pytest.fixture
def hub(hub_env):
    """``hub_env``, checking after the test that nothing tried to reach a host other than 127.0.0.1."""
    yield hub_env
    assert hub_env.blocked == []


@pytest.fixture(scope="module")
def adapter_folder(tiny_model_dir, tmp_path_factory):
    """A rewriter folder with a (random, non-zero) LoRA adapter on the tiny model."""
    import torch
    from peft import LoraConfig, get_peft_model

    from hf_patchdist.models import load_model_and_tokenizer

    folder = tmp_path_factory.mktemp("adapter-rewriter")
    model, _ = load_model_and_tokenizer(tiny_model_dir, dtype="float32", device="cpu")
    torch.manual_seed(1)
    # init_lora_weights=False: a zero B matrix would make the adapter a no-op and the comparison meaningless.
    get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)).save_pretrained(folder)
    RewriterConfig(base_model=tiny_model_dir, has_adapter=True, generation=dict(GENERATION)).save(folder)
    return folder
