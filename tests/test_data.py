import json

import pytest

from hf_patchdist.data import builtin_arithmetic_dataset, load_any_dataset
from hf_patchdist.verifiers import MathVerifier


def test_builtin_set_is_deterministic_and_verifiable():
    first, second = builtin_arithmetic_dataset(16, seed=3), builtin_arithmetic_dataset(16, seed=3)
    assert first.to_list() == second.to_list()
    assert builtin_arithmetic_dataset(16, seed=4).to_list() != first.to_list()
    verifier = MathVerifier()
    for row in first:
        assert verifier(row["answer"], row["answer"], question=row["question"]).passed, row


def test_local_files_and_saved_sets(tmp_path):
    rows = [{"question": "q", "answer": "#### 1"}] * 5
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(load_any_dataset(str(jsonl), split="train[1:3]")) == 2
    load_any_dataset(str(jsonl)).save_to_disk(str(tmp_path / "saved"))
    assert load_any_dataset(str(tmp_path / "saved"), limit=4).num_rows == 4
    bad = tmp_path / "d.txt"
    bad.write_text("x")
    with pytest.raises(ValueError, match="jsonl"):
        load_any_dataset(str(bad))


ROWS = [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}", "id": i} for i in range(5)]


def _write(path, fmt):
    import pandas as pd

    frame = pd.DataFrame(ROWS)
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    else:  # one JSON array of records, not JSON lines
        path.write_text(json.dumps(ROWS, indent=1))


@pytest.mark.parametrize(("fmt", "name"), [("parquet", "d.parquet"), ("csv", "d.csv"), ("json", "d.json"), ("csv", "D.CSV")])
def test_parquet_csv_and_json_files(tmp_path, fmt, name):
    path = tmp_path / name
    _write(path, fmt)
    dataset = load_any_dataset(str(path))
    assert dataset.num_rows == 5 and dataset.column_names == ["question", "answer", "id"]
    assert dataset.to_list() == ROWS, "values and types survive (the answer's newline too)"
    assert load_any_dataset(str(path), split="train[1:3]").to_list() == ROWS[1:3]
    assert load_any_dataset(str(path), limit=2).to_list() == ROWS[:2]


def test_unreachable_hub_dataset_is_named():
    with pytest.raises(FileNotFoundError, match="nobody/no-such-set"):
        load_any_dataset("nobody/no-such-set")
