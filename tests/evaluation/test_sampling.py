"""Measures that generate: downstream accuracy by greedy generation."""

from __future__ import annotations

from conftest import GOOD_REWRITES, GSM8K_ROWS

from hf_patchdist.evaluation.sampling import evaluate_math_generation
from hf_patchdist.generation import StaticBackend


def test_generation_verifier_accepts_the_right_answer_and_rejects_the_wrong_one(tiny_model):
    model, tokenizer = tiny_model
    items = [(r["question"], r["answer"]) for r in GSM8K_ROWS[:2]]  # gold 72 and 10

    seen = []

    def respond(prompt: str) -> str:
        seen.append(prompt)
        if "Natalia" in prompt:
            return GOOD_REWRITES[72]  # ends "#### 72": right
        return "She works 50 minutes at $12 an hour, so she earns 12 dollars.\nThe answer is 12."  # wrong

    backend = StaticBackend(respond)
    result = evaluate_math_generation(model, tokenizer, items, backend=backend, show_progress=False)
    assert [d["correct"] for d in result["details"]] == [True, False]
    assert [d["predicted"] for d in result["details"]] == ["72", "12"]
    assert result["accuracy"] == 0.5 and result["extracted"] == 1.0
    # the prompts are the questions asked through the chat template, as a user would ask them, in one batch
    assert backend.calls == 1
    expected = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True) for q, _ in items]
    assert seen == expected
    assert expected[0].endswith("<|im_start|>assistant\n") and "<|im_start|>user\n" + items[0][0] in expected[0]


def test_answers_and_kl_samples_come_from_the_decode_loop_with_generate_s_greedy_answers(tiny_model, monkeypatch):
    """Evaluation generates through TransformersBackend's decode loop (model.generate is never called), and its
    greedy float32 answers are the ones model.generate gives."""
    from conftest import sharpen_weights

    from hf_patchdist.evaluation.sampling import generate_answers, sample_continuations
    from hf_patchdist.generation import TransformersBackend

    model, tokenizer = tiny_model
    sharpen_weights(model)
    questions = [r["question"] for r in GSM8K_ROWS] + ["What is 2 + 2?"]
    before = generate_answers(
        model, tokenizer, questions, backend=TransformersBackend(model, tokenizer, decode_loop="generate"),
        max_new_tokens=12, batch_size=3, show_progress=False,
    )
    assert len(set(before)) == len(questions), "the questions must have different greedy answers"

    def no_generate(*args, **kwargs):
        raise AssertionError("evaluation called model.generate")

    monkeypatch.setattr(model, "generate", no_generate)
    assert generate_answers(model, tokenizer, questions, max_new_tokens=12, batch_size=3, show_progress=False) == before
    samples = sample_continuations(model, tokenizer, ["Hello", "What is 2 + 2?"], max_new_tokens=6, show_progress=False)
    assert len(samples) == 2 and all(samples)
