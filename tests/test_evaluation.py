"""Evaluation on a tiny model with hand-made items whose right answer is known."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import GSM8K_ROWS, GOOD_REWRITES

from hf_patchdist.evaluation import (
    EvaluationConfig,
    MathAnswerAccuracy,
    MultipleChoiceAccuracy,
    MultipleChoiceItem,
    TaskSpec,
    answer_nll,
    compare_to_base,
    continuation_log_probs,
    evaluate_math_generation,
    evaluate_multiple_choice,
    forgetting,
    kl_divergence,
    load_task_rows,
    normalize_hub_arc,
    normalize_hub_hellaswag,
    run_evaluation,
    sample_continuations,
    to_multiple_choice_items,
    write_report,
)
from hf_patchdist.generation import StaticBackend
from hf_patchdist.import_utils import is_matplotlib_available
from hf_patchdist.scoring import QAScorer, render_qa_prompt

SKY = "Question: What color is the sky?\nAnswer:"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

ARC_ROW = {"id": "x1", "question": "What color is the sky?", "choices": ["green", "blue", "red"], "labels": ["A", "B", "C"], "answer_index": 1}
HELLASWAG_ROW = {
    "id": "hellaswag_val_00000",
    "activity_label": "Roof shingle removal",
    "context": "A man is sitting on a roof. he",
    "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
    "answer_index": 3,
}


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


def test_acc_norm_divides_by_characters():
    metric = MultipleChoiceAccuracy()
    # raw picks choice 0 (-3 > -8), per character picks choice 1 (-8/20 > -3/2)
    out = metric.compute(predictions=[[-3.0, -8.0]], references=[1], choice_lengths=[[2, 20]])
    assert out == {"accuracy": 0.0, "accuracy_norm": 1.0, "gold_nll_per_char": pytest.approx(0.4)}


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


# --------------------------------------------------------------------------- downstream accuracy


def test_generation_verifier_accepts_the_right_answer_and_rejects_the_wrong_one(tiny_model):
    model, tokenizer = tiny_model
    items = [(r["question"], r["answer"]) for r in GSM8K_ROWS[:2]]  # gold 72 and 10

    def respond(prompt: str) -> str:
        if "Natalia" in prompt:
            return GOOD_REWRITES[72]  # ends "#### 72": right
        return "She works 50 minutes at $12 an hour, so she earns 12 dollars.\nThe answer is 12."  # wrong

    backend = StaticBackend(respond)
    result = evaluate_math_generation(model, tokenizer, items, backend=backend, show_progress=False)
    assert [d["correct"] for d in result["details"]] == [True, False]
    assert [d["predicted"] for d in result["details"]] == ["72", "12"]
    assert result["accuracy"] == 0.5 and result["extracted"] == 1.0
    # the prompts are the questions asked through the chat template
    assert backend.calls == 1


def test_math_metric_compares_final_answers_not_text():
    metric = MathAnswerAccuracy()
    out = metric.compute(
        predictions=["So the total is \\boxed{72}.", "48 + 24 = 72 clips, $72.00 in all.", "no number here"],
        references=["#### 72", "#### 72", "#### 72"],
    )
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["extracted"] == pytest.approx(2 / 3)


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


# --------------------------------------------------------------------------- comparison and reports


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


def test_report_writes_json_markdown_and_png(tmp_path):
    methods = {
        "base": {"gsm8k": 0.02, "gsm8k_n": 100, "arc_easy": 0.46, "hellaswag": 0.40, "forgetting_mean": 0.0, "gsm8k_gain": 0.0, "kl_general": 0.0, "heldout_nll_gain": 0.0},
        "sft": {"gsm8k": 0.03, "gsm8k_n": 100, "arc_easy": 0.44, "hellaswag": 0.39, "forgetting_mean": 0.034, "gsm8k_gain": 0.01, "kl_general": 0.31, "heldout_nll_gain": 0.4, "kl_from_base": float("nan")},
    }
    paths = write_report(methods, tmp_path, config={"seed": 0}, title="test")
    data = json.loads(paths["json"].read_text())
    assert set(data["methods"]) == {"base", "sft"} and data["config"] == {"seed": 0}
    assert data["methods"]["sft"]["kl_from_base"] is None  # NaN written as null
    table = paths["markdown"].read_text()
    assert "| sft |" in table and "GSM8K acc (n=100)" in table and "+3.40%" in table
    if is_matplotlib_available():
        assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "plot" not in paths


# --------------------------------------------------------------------------- data schemas


def test_shared_schemas_and_hub_rows_give_the_same_items():
    arc = to_multiple_choice_items([ARC_ROW])[0]
    assert arc.query == SKY and arc.choices == ["green", "blue", "red"] and arc.answer_index == 1
    assert "A. green" in arc.chat_question()
    hub_arc = normalize_hub_arc({"id": "x1", "question": ARC_ROW["question"], "choices": {"text": ARC_ROW["choices"], "label": ["A", "B", "C"]}, "answerKey": "B"})
    assert to_multiple_choice_items([hub_arc])[0] == arc

    swag = to_multiple_choice_items([HELLASWAG_ROW])[0]
    assert swag.query == "Roof shingle removal: A man is sitting on a roof. he"
    assert swag.choices == HELLASWAG_ROW["endings"] and swag.answer_index == 3
    hub_swag = normalize_hub_hellaswag(
        {"activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he", "endings": HELLASWAG_ROW["endings"], "label": "3"}
    )
    assert to_multiple_choice_items([hub_swag])[0].query == "Roof shingle removal: A man is sitting on a roof. He"  # lm-eval capitalises ctx_b


def test_user_columns_and_letter_answers():
    spec = TaskSpec("quiz", "multiple_choice", question_column="prompt", choices_column="options", answer_column="gold")
    item = to_multiple_choice_items([{"prompt": "2+2?", "options": ["3", "4"], "gold": "B"}], spec)[0]
    assert item.query == "Question: 2+2?\nAnswer:" and item.answer_index == 1
    with pytest.raises(ValueError, match="choices column"):
        to_multiple_choice_items([{"prompt": "2+2?", "gold": 1}])


def test_local_file_task(tmp_path):
    path = tmp_path / "quiz.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [ARC_ROW, ARC_ROW]) + "\n")
    rows = load_task_rows(TaskSpec("quiz", "multiple_choice", path=str(path)), limit=1)
    assert len(rows) == 1 and rows[0]["answer_index"] == 1


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the project's shared data is not on this machine")
@pytest.mark.parametrize("task", ["gsm8k", "arc_easy", "hellaswag"])
def test_shared_data_files_load(task):
    rows = load_task_rows(task, data_dir=SHARED_DATA, limit=3)
    assert len(rows) == 3
    if task != "gsm8k":
        items = to_multiple_choice_items(rows)
        assert all(0 <= i.answer_index < len(i.choices) for i in items)


# --------------------------------------------------------------------------- end to end


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
