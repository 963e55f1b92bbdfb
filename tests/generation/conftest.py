"""Fixtures shared by the tests of the engines that convert a model (CTranslate2, OpenVINO): a tiny Llama whose outputs depend on the prompt.

The session's tiny model greedily repeats one token; the model here is re-drawn with ``sharpen_weights`` so
that greedy outputs depend on every prompt token, and its newline token's embedding is scaled up so that
newlines come often enough to test the final-answer stop.
"""

from __future__ import annotations

import pytest
import torch

from conftest import sharpen_weights


QUESTIONS = [
    "Hi",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "What is 2 + 2?",
    "Betty is saving money for a new wallet which costs $100.",
    "James writes a 3-page letter to 2 different friends twice a week.",
]


def first_line_end(text: str) -> int | None:
    """A stand-in for a verifier's ``final_answer_end``: the text ends after its first non-empty line."""
    end = text.find("\n", len(text) - len(text.lstrip("\n")))
    return end + 1 if end >= 0 else None


@pytest.fixture(scope="module")
def sharp_model_dir(tmp_path_factory, tiny_model_dir):
    """The tiny model re-drawn (outputs depend on the prompt) with frequent newlines, saved for conversion."""
    from hf_patchdist.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(tiny_model_dir, dtype="float32", device="cpu")
    sharpen_weights(model)
    newline = tokenizer.convert_tokens_to_ids("Ċ")
    with torch.no_grad():
        model.get_input_embeddings().weight[newline] *= 1.6  # tied: the output head predicts it more often
    folder = tmp_path_factory.mktemp("sharp-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def sharp_model(sharp_model_dir):
    from hf_patchdist.models import load_model_and_tokenizer

    return load_model_and_tokenizer(sharp_model_dir, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def prompts(sharp_model):
    _, tokenizer = sharp_model
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in QUESTIONS
    ]
