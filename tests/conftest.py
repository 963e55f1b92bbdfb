"""Shared fixtures: tiny models built locally (no Hub), data sets in every TRL format."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A Rewriter that names no backend gets OpenVINO on CPU where it is installed (generation.registry.default_backend):
# the tests pin transformers so that their tiny models decode exactly as written; the OpenVINO tests and the
# default's own tests (tests/generation/test_registry.py) lift it.
os.environ.setdefault("HF_PATCHDIST_BACKEND", "transformers")

import pytest
import torch

pytest_plugins = ["fixtures.hub_server"]

GSM8K_ROWS = [
    {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
    },
    {
        "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
        "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
    },
    {
        "question": "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her parents. How much more money does Betty need to buy the wallet?",
        "answer": "In the beginning, Betty has only 100 / 2 = $<<100/2=50>>50.\nBetty's grandparents gave her 15 * 2 = $<<15*2=30>>30.\nThis means, Betty needs 100 - 50 - 30 - 15 = $<<100-50-30-15=5>>5 more.\n#### 5",
    },
    {
        "question": "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
        "answer": "He writes each friend 3*2=<<3*2=6>>6 pages a week\nSo he writes 6*2=<<6*2=12>>12 pages every week\nThat means he writes 12*52=<<12*52=624>>624 pages a year\n#### 624",
    },
]

# Accepted rewrites for GSM8K_ROWS: other words, every equation true, same final line.
GOOD_REWRITES = {
    72: "In April she sold 48 clips. In May she sold half of that, 48 / 2 = 24 clips.\nTogether that is 48 + 24 = 72 clips.\n#### 72",
    10: "One minute pays 12 / 60 = 0.2 dollars.\nFor 50 minutes she gets 50 * 0.2 = 10 dollars.\n#### 10",
    5: "Betty already has 100 / 2 = 50 dollars. Her grandparents give 2 * 15 = 30 dollars.\nShe still needs 100 - 50 - 15 - 30 = 5 dollars.\n#### 5",
    624: "Each week one friend gets 3 * 2 = 6 pages, so both friends get 6 * 2 = 12 pages.\nIn a year he writes 12 * 52 = 624 pages.\n#### 624",
}

FORMATS = ["plain", "prompt_completion", "conversational_prompt_completion", "messages"]

# Evaluation: one row of each general benchmark in the shared data's schema, and the lm-eval query
# that ARC_ROW's question becomes.
SKY = "Question: What color is the sky?\nAnswer:"
ARC_ROW = {"id": "x1", "question": "What color is the sky?", "choices": ["green", "blue", "red"], "labels": ["A", "B", "C"], "answer_index": 1}
HELLASWAG_ROW = {
    "id": "hellaswag_val_00000",
    "activity_label": "Roof shingle removal",
    "context": "A man is sitting on a roof. he",
    "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
    "answer_index": 3,
}


def make_dataset(fmt: str, rows=GSM8K_ROWS):
    """The GSM8K rows in one of the four formats the Rewriter accepts."""
    from datasets import Dataset

    if fmt == "plain":
        data = [dict(r) for r in rows]
    elif fmt == "prompt_completion":
        data = [{"prompt": r["question"], "completion": r["answer"]} for r in rows]
    elif fmt == "conversational_prompt_completion":
        data = [
            {
                "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": r["question"]}],
                "completion": [{"role": "assistant", "content": r["answer"]}],
            }
            for r in rows
        ]
    elif fmt == "messages":
        data = [
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello! Ask me a math question."},
                    {"role": "user", "content": r["question"]},
                    {"role": "assistant", "content": r["answer"]},
                ]
            }
            for r in rows
        ]
    else:
        raise ValueError(fmt)
    return Dataset.from_list(data)


def good_rewrite_for(prompt: str) -> str:
    """StaticBackend responder: the accepted rewrite of whichever GSM8K row the prompt holds."""
    for row in GSM8K_ROWS:
        if row["question"] in prompt:
            return GOOD_REWRITES[int(row["answer"].split("####")[-1])]
    return "I do not know."


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama with the embedded model's tokenizer (chat template included), saved locally."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_patchdist.models import load_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def sharpen_weights(model) -> None:
    """Re-draw a tiny model's weights so that greedy outputs depend on every prompt token, position and mask entry.

    Weights at std 2/sqrt(fan_in) (embeddings at 1) make the outputs chaotic; queries and keys at
    1/sqrt(fan_in) keep attention spread over many positions, so a padding position wrongly let
    through (a mask row of another row) shifts the output instead of drowning under one peak.
    """
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 2 and "lora_" not in name:
                scale = 1.0 if ("q_proj" in name or "k_proj" in name) else 2.0
                std = 1.0 if "embed" in name else scale / parameter.shape[1] ** 0.5
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


@pytest.fixture
def tiny_model(tiny_model_dir):
    from hf_patchdist.models import load_model_and_tokenizer

    return load_model_and_tokenizer(tiny_model_dir, dtype="float32", device="cpu")


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    """A throwaway module on ``sys.path`` that records its own import: ``probe.imported()`` tells whether any code
    named ``probe.path`` (``"<module>:gate"``, a verifier function accepting everything) was imported."""
    import sys
    import uuid
    from types import SimpleNamespace

    name = f"hfpd_probe_{uuid.uuid4().hex[:10]}"
    marker = tmp_path / f"{name}.imported"
    (tmp_path / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n\n\n"
        "def gate(candidate, reference):\n    return True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield SimpleNamespace(name=name, path=f"{name}:gate", imported=lambda: name in sys.modules or marker.exists())
    sys.modules.pop(name, None)
