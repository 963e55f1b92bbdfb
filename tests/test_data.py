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


def test_unreachable_hub_dataset_is_named():
    with pytest.raises(FileNotFoundError, match="nobody/no-such-set"):
        load_any_dataset("nobody/no-such-set")
