"""Metrics: multiple-choice and math accuracy, forgetting and the comparison with the base model."""

from __future__ import annotations

import pytest

from hf_patchdist.evaluation.metrics import MathAnswerAccuracy, MultipleChoiceAccuracy, compare_to_base, forgetting


def test_acc_norm_divides_by_characters():
    metric = MultipleChoiceAccuracy()
    # raw picks choice 0 (-3 > -8), per character picks choice 1 (-8/20 > -3/2)
    out = metric.compute(predictions=[[-3.0, -8.0]], references=[1], choice_lengths=[[2, 20]])
    assert out == {"accuracy": 0.0, "accuracy_norm": 1.0, "gold_nll_per_char": pytest.approx(0.4)}


def test_math_metric_compares_final_answers_not_text():
    metric = MathAnswerAccuracy()
    out = metric.compute(
        predictions=["So the total is \\boxed{72}.", "48 + 24 = 72 clips, $72.00 in all.", "no number here"],
        references=["#### 72", "#### 72", "#### 72"],
    )
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["extracted"] == pytest.approx(2 / 3)


def test_forgetting_is_signed_and_relative():
    assert forgetting(0.5, 0.4) == pytest.approx(0.2)  # lost a fifth of the accuracy
    assert forgetting(0.5, 0.6) == pytest.approx(-0.2)  # got better: negative forgetting
    assert forgetting(0.5, 0.5) == 0.0
    assert forgetting(0.0, 0.3) is None
    base = {"gsm8k": 0.02, "heldout_answer_nll": 1.3, "arc_easy": 0.5, "hellaswag": 0.4}
    tuned = {"gsm8k": 0.05, "heldout_answer_nll": 0.9, "arc_easy": 0.4, "hellaswag": 0.44}
    out = compare_to_base(tuned, base, general_tasks=["arc_easy", "hellaswag"])
    assert out["forgetting_arc_easy"] == pytest.approx(0.2)
    assert out["forgetting_hellaswag"] == pytest.approx(-0.1)
    assert out["forgetting_mean"] == pytest.approx(0.05)
    assert out["gsm8k_gain"] == pytest.approx(0.03)
    assert out["heldout_nll_gain"] == pytest.approx(0.4)


def test_lm_eval_accuracies_are_general_benchmarks_like_the_others():
    from hf_patchdist.evaluation.lm_eval_harness import lm_eval_task_keys

    base = {"arc_easy": 0.5, "arc_easy_n": 10, "lm_eval/piqa": 0.6, "lm_eval/piqa_raw": 0.55, "lm_eval/piqa_n": 20}
    tuned = {**base, "arc_easy": 0.4, "lm_eval/piqa": 0.54}
    general = ["arc_easy", *lm_eval_task_keys(tuned)]
    assert general == ["arc_easy", "lm_eval/piqa"]
    out = compare_to_base(tuned, base, general_tasks=general, new_task=None)
    assert out["forgetting_lm_eval/piqa"] == pytest.approx(0.1) and out["forgetting_mean"] == pytest.approx(0.15)
