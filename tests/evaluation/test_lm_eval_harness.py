"""lm-evaluation-harness as an engine: item-by-item agreement with the project's own measure, and the forgetting report.

A local lm-eval task over the tiny ARC-Easy fixture runs on the tiny model through ``HFLM`` and
``simple_evaluate``; the project's :func:`evaluate_multiple_choice` scores the same items. Both must
give the same per-choice log-likelihoods, the same predictions (raw and per character) and so the
same ``acc`` and ``acc_norm``.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from hf_patchdist.evaluation import (
    EvaluationConfig,
    evaluate_multiple_choice,
    forgetting,
    lm_eval_metrics,
    lm_eval_task_keys,
    lm_eval_task_manager,
    lm_eval_task_yaml,
    load_task_file,
    load_task_rows,
    require_lm_eval,
    run_evaluation,
    run_lm_eval,
    to_multiple_choice_items,
    write_lm_eval_task,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ARC_TINY = FIXTURES / "data" / "arc_easy_tiny.jsonl"
TASK = "arc_easy_tiny_lm"


def _items():
    return to_multiple_choice_items(load_task_rows(load_task_file(FIXTURES / "evaluation_tasks.yaml")[0]))


@pytest.fixture(scope="module")
def taught_model(tiny_model_dir):
    """The tiny model after 5 steps on the gold answers of the fixture's first 6 items.

    The random tiny model gets acc_norm 0 on the fixture (no forgetting could be measured against
    it); taught, it gets some items right and some wrong (acc 0.5, acc_norm 0.42), and acc_norm
    picks another choice than acc on half the items. Shared by the tests here, which do not change it.
    """
    from hf_patchdist.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(tiny_model_dir, dtype="float32", device="cpu")
    texts = [item.query + " " + item.choices[item.answer_index] for item in _items()[:6]]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    model.train()
    for _ in range(5):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model, tokenizer


@pytest.fixture
def include_path(tmp_path):
    return write_lm_eval_task(tmp_path / "lm_eval_tasks", TASK, ARC_TINY)


def test_the_task_yaml_reads_the_fixture(include_path):
    text = (include_path / f"{TASK}.yaml").read_text()
    assert f"test: {json.dumps(str(ARC_TINY))}" in text and 'doc_to_text: "Question: {{question}}\\nAnswer:"' in text
    assert lm_eval_task_yaml(TASK, ARC_TINY) == text
    with pytest.raises(FileNotFoundError, match="missing.jsonl does not exist"):
        lm_eval_task_yaml(TASK, FIXTURES / "missing.jsonl")


def test_lm_eval_agrees_with_the_project_item_by_item(taught_model, include_path):
    pytest.importorskip("lm_eval")
    model, tokenizer = taught_model
    items = _items()
    ours = evaluate_multiple_choice(model, tokenizer, items, batch_size=16, show_progress=False)
    theirs = run_lm_eval(model, tokenizer, [TASK], include_path=include_path, batch_size=8)[TASK]

    assert theirs["n"] == ours["n"] == len(items) == 12
    details = sorted(theirs["details"], key=lambda d: d["doc_id"])
    assert [d["doc_id"] for d in details] == list(range(12))
    for item, mine, lm in zip(items, ours["details"], details, strict=True):
        assert lm["answer_index"] == mine["answer_index"] == item.answer_index
        # the same query, delimiter and tokens: the same log-likelihood of every choice
        assert lm["log_likelihoods"] == pytest.approx(mine["log_likelihoods"], abs=1e-4)  # measured: within 2e-5
        assert (lm["prediction"], lm["prediction_norm"]) == (mine["prediction"], mine["prediction_norm"])
        # lm-eval's own per-item verdicts (its length normalisation: characters of the choice)
        assert lm["acc"] == float(mine["prediction"] == item.answer_index)
        assert lm["acc_norm"] == float(mine["prediction_norm"] == item.answer_index)
    assert theirs["acc"] == pytest.approx(ours["acc"], abs=1e-12) and theirs["acc_norm"] == pytest.approx(ours["acc_norm"], abs=1e-12)
    # the comparison means something: some items right, some wrong, and acc_norm picks differently from acc somewhere
    assert 0 < ours["acc"] < 1 and 0 < ours["acc_norm"] < 1
    assert any(d["prediction"] != d["prediction_norm"] for d in ours["details"])

    metrics = lm_eval_metrics({TASK: theirs})
    assert metrics == {f"lm_eval/{TASK}": theirs["acc_norm"], f"lm_eval/{TASK}_raw": theirs["acc"], f"lm_eval/{TASK}_n": 12}
    assert lm_eval_task_keys({**metrics, "arc_easy": 0.5, "arc_easy_n": 3}) == [f"lm_eval/{TASK}"]


def test_limit_and_unknown_tasks(tiny_model, include_path):
    pytest.importorskip("lm_eval")
    model, tokenizer = tiny_model
    result = run_lm_eval(model, tokenizer, [TASK], include_path=include_path, limit=3)[TASK]
    assert result["n"] == 3 and len(result["details"]) == 3
    with pytest.raises(ValueError, match=r"lm-eval does not know the task\(s\) \['no_such_task_xyz'\].*include path"):
        lm_eval_task_manager(["no_such_task_xyz"], include_path)
    with pytest.raises(FileNotFoundError, match="include path .*nowhere does not exist"):
        lm_eval_task_manager([TASK], include_path / "nowhere")


def test_the_forgetting_report_includes_lm_eval_accuracies(taught_model, include_path, tmp_path):
    pytest.importorskip("lm_eval")
    base, tokenizer = taught_model
    tuned = copy.deepcopy(base)
    with torch.no_grad():  # a stand-in for fine-tuning: noise on the (tied) embeddings
        generator = torch.Generator().manual_seed(0)
        weight = tuned.get_input_embeddings().weight
        weight.add_(weight.std() * torch.randn(weight.shape, generator=generator))
    config = EvaluationConfig(kl_prompts=2, kl_tokens=3, show_progress=False)
    user_arc = load_task_file(FIXTURES / "evaluation_tasks.yaml")[0]
    report = run_evaluation(
        tuned, tokenizer=tokenizer, base=base, tasks=[user_arc], config=config, output_dir=tmp_path / "out",
        lm_eval_tasks=[TASK], lm_eval_include_path=include_path,
    )
    key = f"lm_eval/{TASK}"
    metrics, base_metrics, comparison = report["metrics"], report["base_metrics"], report["comparison"]
    assert metrics[f"{key}_n"] == base_metrics[f"{key}_n"] == 12
    # lm-eval and the project's measure agree on the same fixture, for each model
    for m in (metrics, base_metrics):
        assert m[key] == pytest.approx(m["arc_easy_tiny"]) and m[f"{key}_raw"] == pytest.approx(m["arc_easy_tiny_raw"])
    assert base_metrics[key] > 0 and metrics[key] != base_metrics[key], "the noise should move the accuracy (here it helps a little)"
    expected = forgetting(base_metrics[key], metrics[key])
    assert comparison[f"forgetting_{key}"] == pytest.approx(expected) and expected != 0
    assert comparison["forgetting_arc_easy_tiny"] == pytest.approx(expected)
    assert comparison["forgetting_mean"] == pytest.approx(expected)  # the mean of the two, which agree
    assert metrics["kl_general"] > 0 and not math.isnan(metrics["kl_general"])
    assert report["config"]["lm_eval_tasks"] == [TASK] and report["config"]["user_tasks"]["arc_easy_tiny"]["path"] == str(ARC_TINY)

    out = tmp_path / "out"
    saved = json.loads((out / "results.json").read_text())["methods"]
    assert saved["model"][f"forgetting_{key}"] == pytest.approx(expected) and saved["base"][key] == base_metrics[key]
    table = (out / "results.md").read_text()
    assert f"lm-eval {TASK} (n=12)" in table and f"lm-eval {TASK} acc" in table and "arc_easy_tiny acc_norm (n=12)" in table
    assert "lm-evaluation-harness" in table
    details = json.loads((out / "details.json").read_text())
    assert len(details["model"][key]) == len(details["base"][key]) == 12
    assert details["model"][key][0]["log_likelihoods"] != details["base"][key][0]["log_likelihoods"]


def test_a_clear_error_without_lm_eval(monkeypatch):
    import hf_patchdist.evaluation.lm_eval_harness as harness

    monkeypatch.setattr(harness, "is_lm_eval_available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install 'hf-patchdist\[lm-eval\]'"):
        require_lm_eval()
    with pytest.raises(ImportError, match=r"pip install 'hf-patchdist\[lm-eval\]'"):
        run_evaluation(object(), tokenizer=object(), tasks=[], lm_eval_tasks=["arc_easy"])
