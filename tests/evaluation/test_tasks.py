"""Tasks and their data: shared-data and Hub schemas, user columns, local files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ARC_ROW, HELLASWAG_ROW, SKY

from hf_patchdist.evaluation.tasks import TaskSpec, load_task_rows, normalize_hub_arc, normalize_hub_hellaswag, to_multiple_choice_items

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


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the project's shared data is not on this machine")
@pytest.mark.parametrize("task", ["gsm8k", "arc_easy", "hellaswag"])
def test_shared_data_files_load(task):
    rows = load_task_rows(task, data_dir=SHARED_DATA, limit=3)
    assert len(rows) == 3
    if task != "gsm8k":
        items = to_multiple_choice_items(rows)
        assert all(0 <= i.answer_index < len(i.choices) for i in items)
