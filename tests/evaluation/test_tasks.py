"""Tasks and their data: shared-data and Hub schemas, user columns, local files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ARC_ROW, HELLASWAG_ROW, SKY

from hf_patchdist.evaluation.tasks import (
    TaskSpec,
    load_task_rows,
    normalize_hub_arc,
    normalize_hub_hellaswag,
    to_math_items,
    to_multiple_choice_items,
)

from .helpers import FIXTURE_DATA, FIXTURE_FILES, fixture_data_dir

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


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


@pytest.mark.parametrize("task", ["gsm8k", "arc_easy", "hellaswag"])
def test_data_files_in_the_shared_layout_load(task, tmp_path):
    """The built-in tasks read the tiny fixture files laid out as the shared data (runs on a fresh clone)."""
    data_dir = fixture_data_dir(tmp_path / "data")
    rows = load_task_rows(task, data_dir=data_dir, limit=3)
    expected = [json.loads(line) for line in (FIXTURE_DATA / FIXTURE_FILES[task][0]).read_text().splitlines()[:3]]
    assert rows == expected
    if task == "gsm8k":
        items = to_math_items(rows)
        assert [answer.rsplit("#### ", 1)[-1] for _, answer in items] == ["18", "3", "70000"]
        assert items[0][0].startswith("Janet")
        return
    items = to_multiple_choice_items(rows)
    assert [i.answer_index for i in items] == [r["answer_index"] for r in expected]
    assert all(0 <= i.answer_index < len(i.choices) for i in items)
    first = items[0]
    if task == "arc_easy":
        assert first.query == f"Question: {expected[0]['question']}\nAnswer:" and first.choices == expected[0]["choices"]
    else:
        assert first.query == "Roof shingle removal: A man is sitting on a roof. he" and first.answer_index == 3


@pytest.mark.parametrize("task", ["gsm8k", "arc_easy", "hellaswag"])
def test_shared_data_files_load(task):
    """The same on the project's real shared data, where this machine has it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the project's shared data is not on this machine ({SHARED_DATA} is missing); "
                    "test_data_files_in_the_shared_layout_load covers the same code on the tiny fixtures")
    rows = load_task_rows(task, data_dir=SHARED_DATA, limit=3)
    assert len(rows) == 3
    if task != "gsm8k":
        items = to_multiple_choice_items(rows)
        assert all(0 <= i.answer_index < len(i.choices) for i in items)
