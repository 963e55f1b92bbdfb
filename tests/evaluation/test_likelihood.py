"""Measures by log-likelihood on a tiny model with hand-made items whose right answer is known."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import GSM8K_ROWS, SKY

from hf_patchdist.evaluation.likelihood import answer_nll, continuation_log_probs, evaluate_multiple_choice, kl_divergence
from hf_patchdist.evaluation.sampling import sample_continuations
from hf_patchdist.evaluation.tasks import MultipleChoiceItem
from hf_patchdist.scoring import QAScorer, render_qa_prompt


def _teach(model, tokenizer, text: str, steps: int = 40) -> None:
    """Fine-tune the tiny model on one text until it clearly prefers it."""
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


# --------------------------------------------------------------------------- multiple choice


def test_the_choice_the_model_was_taught_is_picked(tiny_model):
    model, tokenizer = tiny_model
    _teach(model, tokenizer, SKY + " blue")
    items = [
        MultipleChoiceItem(SKY, ["green", "blue", "red"], answer_index=1),  # taught answer is gold
        MultipleChoiceItem(SKY, ["green", "blue", "red"], answer_index=0),  # taught answer is wrong here
    ]
    result = evaluate_multiple_choice(model, tokenizer, items, batch_size=16, show_progress=False)
    assert [d["prediction"] for d in result["details"]] == [1, 1]
    assert [d["prediction_norm"] for d in result["details"]] == [1, 1]
    assert result["acc"] == result["acc_norm"] == 0.5
    # the gold NLL per character is small where the gold is the taught answer, large elsewhere
    ll = result["details"][0]["log_likelihoods"]
    assert result["gold_nll_per_char"] == pytest.approx((-ll[1] / 4 - ll[0] / 5) / 2)
    assert -ll[1] / 4 < 0.5 < -ll[0] / 5


def test_log_probs_do_not_depend_on_batching(tiny_model):
    model, tokenizer = tiny_model
    contexts = [SKY, "A much longer context that forces padding " * 5, "Hi"]
    continuations = [" blue", " and a continuation of several tokens", " there"]
    alone = [continuation_log_probs(model, tokenizer, [c], [k])[0] for c, k in zip(contexts, continuations)]
    batched = continuation_log_probs(model, tokenizer, contexts, continuations, batch_size=8)
    for single, together in zip(alone, batched):
        torch.testing.assert_close(single, together, atol=1e-4, rtol=1e-4)


def test_answer_nll_is_the_rewriters_nll(tiny_model):
    model, tokenizer = tiny_model
    items = [(r["question"], r["answer"]) for r in GSM8K_ROWS[:3]]
    ours = answer_nll(model, tokenizer, items, batch_size=2, show_progress=False)
    scorer = QAScorer(model, tokenizer).score([render_qa_prompt(tokenizer, q) for q, _ in items], [a for _, a in items])
    assert ours["per_item"] == pytest.approx(scorer.nll, abs=1e-4)
    assert ours["nll"] == pytest.approx(sum(scorer.nll) / 3, abs=1e-4)


# --------------------------------------------------------------------------- KL


def test_kl_of_a_model_with_itself_is_zero_and_positive_after_a_change(tiny_model):
    model, tokenizer = tiny_model
    prompts = [render_qa_prompt(tokenizer, q) for q in ["What is 2+3?", "Name a color, please, and explain why."]]
    continuations = sample_continuations(model, tokenizer, prompts, max_new_tokens=6, seed=0, show_progress=False)
    assert continuations == sample_continuations(model, tokenizer, prompts, max_new_tokens=6, seed=0, show_progress=False)
    same = kl_divergence(model, copy.deepcopy(model), tokenizer, prompts, continuations)
    assert same["tokens"] >= 2
    assert same["kl"] == pytest.approx(0.0, abs=1e-7)
    changed = copy.deepcopy(model)
    _teach(changed, tokenizer, SKY + " blue", steps=5)
    assert kl_divergence(model, changed, tokenizer, prompts, continuations)["kl"] > 1e-4
