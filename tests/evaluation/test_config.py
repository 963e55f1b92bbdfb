"""EvaluationConfig: items per task and the JSON form recorded in reports."""

from __future__ import annotations

from hf_patchdist.evaluation.config import EvaluationConfig


def test_limit_for_reads_an_int_a_mapping_or_none():
    assert EvaluationConfig(limit=5).limit_for("gsm8k") == 5
    per_task = EvaluationConfig(limit={"gsm8k": 3})
    assert per_task.limit_for("gsm8k") == 3 and per_task.limit_for("arc_easy") is None
    assert EvaluationConfig().limit_for("gsm8k") is None
    assert EvaluationConfig(seed=7).to_dict()["seed"] == 7
