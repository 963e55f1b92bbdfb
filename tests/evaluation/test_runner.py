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
from hf_patchdist.generation import GeneratedText

from .helpers import fixture_data_dir


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


def perturbed_copy(model, seed: int = 2, scale: float = 0.2):
    """A copy of ``model`` with Gaussian noise on every weight: a model that differs from its base."""
    import torch

    tuned = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return tuned


def test_run_evaluation_of_a_perturbed_model_against_its_base(tiny_model, tmp_path, monkeypatch):
    """KL > 0, and forgetting, gains and NLL gain with the signs metrics.py defines, checked by hand."""
    import hf_patchdist.evaluation.sampling as sampling

    model, tokenizer = tiny_model
    tuned = perturbed_copy(model)
    data_dir = fixture_data_dir(tmp_path / "data")
    gsm8k = [json.loads(line) for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()]
    gold = [row["answer"].rsplit("#### ", 1)[-1] for row in gsm8k]

    # The tiny random models never write a number, so their greedy math answers are fixed here: the base
    # answers the first question right, the tuned model the first two (GSM8K accuracy 0.25 -> 0.5). The
    # pi_0 samples of the KL measures stay real (sampled generation goes to the real backend).
    real_backend = sampling.TransformersBackend

    class GreedyAnswers:
        def __init__(self, m, tok, show_progress=True):
            self.model, self.real = m, real_backend(m, tok, show_progress=show_progress)

        def generate(self, prompts, *, num_candidates, settings, stop=None):
            if settings.do_sample:
                return self.real.generate(prompts, num_candidates=num_candidates, settings=settings, stop=stop)
            right = 2 if self.model is tuned else 1
            out = []
            for prompt in prompts:
                index = next(i for i, row in enumerate(gsm8k) if row["question"] in prompt)
                answer = gold[index] if index < right else "0"
                out.append([GeneratedText(text=f"So the answer is {answer}.\n#### {answer}")])
            return out

    monkeypatch.setattr(sampling, "TransformersBackend", GreedyAnswers)
    config = EvaluationConfig(max_new_tokens=4, kl_prompts=2, kl_tokens=3, show_progress=False)
    report = run_evaluation(tuned, tokenizer=tokenizer, base=model, data_dir=data_dir, limit=12, config=config, output_dir=tmp_path / "out")
    metrics, base_metrics, comparison = report["metrics"], report["base_metrics"], report["comparison"]

    assert metrics["kl_from_base"] > 1e-3 and metrics["kl_general"] > 1e-3
    assert base_metrics["kl_from_base"] == base_metrics["kl_general"] == 0.0
    assert metrics["gsm8k_n"] == 4 and metrics["arc_easy_n"] == metrics["hellaswag_n"] == 12

    # gain = tuned - base: the tuned model got better at GSM8K, so the gain is positive.
    assert (base_metrics["gsm8k"], metrics["gsm8k"]) == (0.25, 0.5)
    assert comparison["gsm8k_gain"] == pytest.approx(0.25)
    # heldout_nll_gain = base NLL - tuned NLL: positive when the tuned model fits the answers better.
    assert metrics["heldout_answer_nll"] != pytest.approx(base_metrics["heldout_answer_nll"])
    assert comparison["heldout_nll_gain"] == pytest.approx(base_metrics["heldout_answer_nll"] - metrics["heldout_answer_nll"])
    # forgetting = (base - tuned) / base on acc_norm: positive when the tuned model lost accuracy, None when base is 0.
    changed = []
    for task in ("arc_easy", "hellaswag"):
        base, now = base_metrics[task], metrics[task]
        if base == 0:
            assert comparison[f"forgetting_{task}"] is None
            continue
        assert comparison[f"forgetting_{task}"] == pytest.approx((base - now) / base)
        if now != base:
            changed.append(task)
            assert (comparison[f"forgetting_{task}"] > 0) is (now < base)
    assert changed, "the perturbation must move a general benchmark with a non-zero base, or the sign goes unchecked"
    defined = [comparison[f"forgetting_{t}"] for t in ("arc_easy", "hellaswag") if comparison[f"forgetting_{t}"] is not None]
    assert comparison["forgetting_mean"] == pytest.approx(sum(defined) / len(defined))
    written = json.loads((tmp_path / "out" / "results.json").read_text())["methods"]["model"]
    assert written["gsm8k_gain"] == pytest.approx(0.25) and written["forgetting_mean"] == pytest.approx(comparison["forgetting_mean"])
