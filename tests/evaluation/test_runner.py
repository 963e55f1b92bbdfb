"""The whole evaluation end to end, on local data in the shared data's layout."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from conftest import ARC_ROW, GSM8K_ROWS, HELLASWAG_ROW

from hf_patchdist.evaluation.config import EvaluationConfig
from hf_patchdist.evaluation.runner import run_evaluation


def _write_data_dir(folder: Path) -> Path:
    files = {
        "gsm8k/test.jsonl": GSM8K_ROWS[:2],
        "arc_easy/test.jsonl": [ARC_ROW, {**ARC_ROW, "answer_index": 0}],
        "hellaswag/validation.jsonl": [HELLASWAG_ROW, {**HELLASWAG_ROW, "answer_index": 1}],
    }
    for name, rows in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def test_run_evaluation_of_a_model_against_itself(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    config = EvaluationConfig(max_new_tokens=4, kl_prompts=2, kl_tokens=3, show_progress=False)
    report = run_evaluation(
        model,
        tokenizer=tokenizer,
        base=copy.deepcopy(model),
        data_dir=_write_data_dir(tmp_path / "data"),
        limit=2,
        config=config,
        output_dir=tmp_path / "out",
    )
    metrics, comparison = report["metrics"], report["comparison"]
    for key in ("gsm8k", "arc_easy", "arc_easy_raw", "hellaswag", "hellaswag_raw", "heldout_answer_nll", "kl_from_base", "kl_general"):
        assert key in metrics and not math.isnan(metrics[key]), key
    assert metrics["gsm8k_n"] == metrics["arc_easy_n"] == metrics["hellaswag_n"] == 2
    assert metrics["kl_from_base"] == pytest.approx(0.0, abs=1e-7) and metrics["kl_general"] == pytest.approx(0.0, abs=1e-7)
    # the same weights score the same: no forgetting, no gain
    assert comparison["forgetting_mean"] == 0.0 and comparison["gsm8k_gain"] == 0.0
    assert comparison["heldout_nll_gain"] == pytest.approx(0.0, abs=1e-6)
    out = tmp_path / "out"
    assert {"results.json", "results.md", "details.json"} <= {p.name for p in out.iterdir()}
    assert set(json.loads((out / "results.json").read_text())["methods"]) == {"base", "model"}
