"""Measures that generate text: greedy answers for downstream accuracy, pi_0 samples for the KL measures.

Downstream (math) accuracy is greedy generation through the model's chat template, then final-answer
extraction and equivalence (:func:`evaluate_math_generation`). The KL measures need continuations
sampled from the base model pi_0 on two prompt sets (:func:`kl_prompts`, :func:`build_kl_reference`);
the KL itself is a likelihood measure (:func:`~hf_patchdist.evaluation.likelihood.kl_divergence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..generation import GenerationBackend, GenerationSettings, TransformersBackend
from ..scoring import render_qa_prompt
from ..verifiers import MathVerifier, extract_math_answer
from .config import EvaluationConfig
from .metrics import MathAnswerAccuracy, math_answer_correct
from .tasks import TaskData


def generate_answers(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    *,
    backend: GenerationBackend | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    stop_at_final_answer: bool = True,
    show_progress: bool = True,
) -> list[str]:
    """Greedy answers to questions asked through the chat template (QA(q), as a user would ask).

    Generation stops at a completed final-answer line ("#### n", a closed ``\\boxed{}``, "The answer
    is n.") when ``stop_at_final_answer``: what follows cannot change the extracted answer much and
    costs most of the time on a CPU.
    """
    backend = backend or TransformersBackend(model, tokenizer, show_progress=show_progress)
    prompts = [render_qa_prompt(tokenizer, question) for question in questions]
    settings = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=False, batch_size=batch_size)
    stop = MathVerifier().final_answer_end if stop_at_final_answer else None
    generated = backend.generate(prompts, num_candidates=1, settings=settings, stop=stop)
    return [candidates[0].text for candidates in generated]


def evaluate_math_generation(
    model: Any,
    tokenizer: Any,
    items: Sequence[tuple[str, str]],
    *,
    backend: GenerationBackend | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Downstream accuracy: greedy generation, then final-answer extraction and equivalence.

    Returns:
        ``{"accuracy", "extracted", "n", "details"}`` with each item's generation and correctness.
    """
    questions = [q for q, _ in items]
    references = [a for _, a in items]
    texts = generate_answers(
        model, tokenizer, questions, backend=backend, max_new_tokens=max_new_tokens, batch_size=batch_size, show_progress=show_progress
    )
    result = MathAnswerAccuracy().compute(predictions=texts, references=references)
    details = [
        {"question": q, "generation": t, "predicted": extract_math_answer(t), "gold": extract_math_answer(a), "correct": math_answer_correct(t, a)}
        for q, t, a in zip(questions, texts, references)
    ]
    return {"accuracy": result["accuracy"], "extracted": result["extracted"], "n": len(items), "details": details}


def sample_continuations(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 16,
    show_progress: bool = True,
) -> list[str]:
    """Continuations sampled from the model at temperature 1 (the pi_0 samples of the KL measure).

    A continuation that ended on its own gets the EOS token appended, so that the KL also covers the
    decision to stop.
    """
    backend = TransformersBackend(model, tokenizer, show_progress=show_progress)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_p=1.0, batch_size=batch_size)
    torch.manual_seed(seed)
    generated = backend.generate(list(prompts), num_candidates=1, settings=settings)
    eos = tokenizer.eos_token or ""
    return [c[0].text if c[0].truncated else c[0].text + eos for c in generated]


def kl_prompts(tokenizer: Any, data: TaskData, num_prompts: int) -> dict[str, list[str]]:
    """Chat-rendered prompts of the two KL measures.

    ``"new_task"``: the first questions of the downstream task. ``"general"``: general-benchmark
    items asked as chat questions, taken in turn from each benchmark (20 + 20 of 40 with two).
    """
    prompts: dict[str, list[str]] = {}
    if data.new_task is not None:
        prompts["new_task"] = [render_qa_prompt(tokenizer, q) for q, _ in data.math[data.new_task][:num_prompts]]
    pools = [items for items in data.multiple_choice.values() if items]
    if pools:
        general: list[str] = []
        for index in range(max(len(p) for p in pools)):
            general += [render_qa_prompt(tokenizer, p[index].chat_question()) for p in pools if index < len(p)]
        prompts["general"] = general[:num_prompts]
    return prompts


def build_kl_reference(base: Any, tokenizer: Any, data: TaskData, config: EvaluationConfig | None = None) -> dict[str, dict[str, list[str]]]:
    """The pi_0 samples of the KL measures: ``{set: {"prompts": [...], "continuations": [...]}}``.

    JSON-serialisable, so that every model of a comparison is measured on the same samples, also
    across processes (the benchmark stores it next to its results).
    """
    config = config or EvaluationConfig()
    reference = {}
    for name, prompts in kl_prompts(tokenizer, data, config.kl_prompts).items():
        continuations = sample_continuations(
            base, tokenizer, prompts, max_new_tokens=config.kl_tokens, seed=config.seed, batch_size=config.generation_batch_size, show_progress=config.show_progress
        )
        reference[name] = {"prompts": prompts, "continuations": continuations}
    return reference
