"""Metrics: final-answer math accuracy, multiple-choice accuracy, forgetting against the base model.

The two accuracies are local ``evaluate.Metric`` modules (``evaluate.load("accuracy")`` needs the
Hub). :func:`forgetting` and :func:`compare_to_base` turn a model's metrics and its base model's into
forgetting per general benchmark and downstream gains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate

from ..verifiers import extract_math_answer, math_answers_equal


def math_answer_correct(prediction: str, reference: str) -> bool:
    """Whether the final answer extracted from ``prediction`` equals the gold answer of ``reference``.

    Only the final answers are compared (``#### n``, ``\\boxed{}``, "the answer is", else the last
    number), not the reasoning: this is downstream accuracy, not the rewriting gate.
    """
    predicted, gold = extract_math_answer(prediction), extract_math_answer(reference)
    return predicted is not None and gold is not None and math_answers_equal(predicted, gold)


class MathAnswerAccuracy(evaluate.Metric):
    """Accuracy of generated math solutions by final-answer extraction and equivalence.

    Inputs: ``predictions`` (generated texts) and ``references`` (gold solutions or bare answers).
    Returns ``accuracy`` and ``extracted`` (the fraction of predictions with a readable answer).

    Example:
        ```python
        metric = MathAnswerAccuracy()
        metric.compute(predictions=["2+3=5, so the answer is 5."], references=["2+3=<<2+3=5>>5\\n#### 5"])
        # {'accuracy': 1.0, 'extracted': 1.0}
        ```
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("keep_in_memory", True)  # nothing to share between processes: no cache files
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Final-answer accuracy of generated math solutions (extraction + mathematical equivalence).",
            citation="",
            inputs_description="predictions: generated solutions (str); references: gold solutions or answers (str).",
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
        n = len(predictions)
        correct = sum(math_answer_correct(p, r) for p, r in zip(predictions, references))
        extracted = sum(extract_math_answer(p) is not None for p in predictions)
        return {"accuracy": correct / n if n else float("nan"), "extracted": extracted / n if n else float("nan")}


class MultipleChoiceAccuracy(evaluate.Metric):
    """Multiple-choice accuracy from per-choice log-likelihoods, as lm-eval-harness computes it.

    Inputs: ``predictions`` (for each item, the summed log-likelihood of each choice), ``references``
    (the right choice's index) and ``choice_lengths`` (each choice's length in characters).
    Returns ``accuracy`` (argmax of the log-likelihood, lm-eval's ``acc``), ``accuracy_norm``
    (argmax of log-likelihood per character, ``acc_norm``) and ``gold_nll_per_char`` (mean NLL per
    character of the right choice: a continuous measure that moves before the accuracies do).

    Example:
        ```python
        metric = MultipleChoiceAccuracy()
        metric.compute(predictions=[[-3.0, -8.0]], references=[0], choice_lengths=[[2, 20]])
        # {'accuracy': 1.0, 'accuracy_norm': 0.0, 'gold_nll_per_char': 1.5}
        ```
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("keep_in_memory", True)
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Multiple-choice accuracy by log-likelihood of each choice, raw and length-normalised (lm-eval acc/acc_norm).",
            citation="",
            inputs_description=(
                "predictions: per-choice summed log-likelihoods (list of float); references: index of the right choice (int); "
                "choice_lengths: per-choice length in characters (list of int)."
            ),
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                    "choice_lengths": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions: Sequence[Sequence[float]], references: Sequence[int], choice_lengths: Sequence[Sequence[int]]) -> dict[str, float]:
        n = len(predictions)
        if n == 0:
            return {"accuracy": float("nan"), "accuracy_norm": float("nan"), "gold_nll_per_char": float("nan")}
        raw = norm = 0
        gold_nll = 0.0
        for scores, gold, lengths in zip(predictions, references, choice_lengths):
            per_char = [s / max(length, 1) for s, length in zip(scores, lengths)]
            raw += _argmax(scores) == gold
            norm += _argmax(per_char) == gold
            gold_nll += -per_char[gold]
        return {"accuracy": raw / n, "accuracy_norm": norm / n, "gold_nll_per_char": gold_nll / n}


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])  # first index on ties, as numpy


# ---------------------------------------------------------------------------------------------
# Comparison with the base model
# ---------------------------------------------------------------------------------------------


def forgetting(base: float, tuned: float) -> float | None:
    """``(base - tuned) / base``: the relative loss of a general ability. Signed; None when base is 0.

    Example:
        ```python
        >>> forgetting(0.5, 0.4)   # lost a fifth
        0.2
        >>> forgetting(0.5, 0.6)   # got better
        -0.2
        ```
    """
    if base is None or tuned is None or base == 0 or math.isnan(base) or math.isnan(tuned):
        return None
    return round((base - tuned) / base, 12)


def compare_to_base(metrics: Mapping[str, Any], base_metrics: Mapping[str, Any], *, general_tasks: Sequence[str], new_task: str | None = "gsm8k") -> dict[str, Any]:
    """Forgetting per general benchmark (on acc_norm), its mean, and the downstream gains.

    ``general_tasks`` names the metrics that are general benchmarks: the project's multiple-choice
    tasks (``arc_easy``...) and lm-eval accuracies (``lm_eval/<task>``) alike.

    Returns:
        ``forgetting_<task>`` for each general task, ``forgetting_mean`` (mean over the tasks where it
        is defined), ``<new_task>_gain`` (tuned minus base accuracy) and ``heldout_nll_gain`` (base
        minus tuned held-out answer NLL; positive means the tuned model fits the task better).
    """
    comparison: dict[str, Any] = {}
    values = []
    for task in general_tasks:
        if task in metrics and task in base_metrics:
            value = forgetting(base_metrics[task], metrics[task])
            comparison[f"forgetting_{task}"] = value
            if value is not None:
                values.append(value)
    comparison["forgetting_mean"] = sum(values) / len(values) if values else None
    if new_task and new_task in metrics and new_task in base_metrics:
        comparison[f"{new_task}_gain"] = metrics[new_task] - base_metrics[new_task]
    if "heldout_answer_nll" in metrics and "heldout_answer_nll" in base_metrics:
        comparison["heldout_nll_gain"] = base_metrics["heldout_answer_nll"] - metrics["heldout_answer_nll"]
    return comparison
