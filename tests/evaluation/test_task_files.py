"""User task files: YAML and JSON, paths relative to the file, and errors that name file, entry and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_patchdist.evaluation import EvaluationConfig, TaskSpec, combine_tasks, load_task_file, load_tasks, task_spec_dict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ARC_TINY = FIXTURES / "data" / "arc_easy_tiny.jsonl"


def _write(path: Path, entries) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(entries))
    else:
        import yaml

        path.write_text(yaml.safe_dump(entries, sort_keys=False))
    return path


def test_the_shipped_fixture_file_loads_with_paths_relative_to_it():
    specs = load_task_file(FIXTURES / "evaluation_tasks.yaml")
    assert [(s.name, s.kind) for s in specs] == [("arc_easy_tiny", "multiple_choice"), ("gsm8k_tiny", "math")]
    assert specs[0].path == str(ARC_TINY) and specs[1].path == str(FIXTURES / "data" / "gsm8k_tiny.jsonl")
    assert specs[1].question_column == "question" and specs[0].question_column is None
    data = load_tasks(specs)
    items = data.multiple_choice["arc_easy_tiny"]
    assert len(items) == 12 and items[0].query.startswith("Question: Which statement best explains") and items[0].answer_index == 0
    assert [len(i.choices) for i in items[-2:]] == [3, 5]
    assert len(data.math["gsm8k_tiny"]) == 4 and data.new_task == "gsm8k_tiny"


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_yaml_and_json_a_list_or_a_tasks_key_and_user_columns(tmp_path, suffix):
    data = tmp_path / "sets" / "quiz.jsonl"
    data.parent.mkdir()
    data.write_text(json.dumps({"prompt": "2+2?", "options": ["3", "4"], "gold": "B"}) + "\n")
    entry = {
        "name": "quiz",
        "kind": "multiple_choice",
        "path": "sets/quiz.jsonl",
        "split": "train",
        "question_column": "prompt",
        "choices_column": "options",
        "answer_column": "gold",
    }
    for i, content in enumerate(([entry], {"tasks": [entry]})):
        specs = load_task_file(_write(tmp_path / f"tasks{i}{suffix}", content))
        assert specs == [TaskSpec(**{**entry, "path": str(data)})]
        item = load_tasks(specs).multiple_choice["quiz"][0]
        assert item.query == "Question: 2+2?\nAnswer:" and item.choices == ["3", "4"] and item.answer_index == 1
    assert task_spec_dict(specs[0]) == {**entry, "path": str(data)}


def test_paths_resolve_against_the_file_not_the_working_directory(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "eval"
    _write(folder / "tasks.yaml", [{"name": "arc_tiny", "kind": "multiple_choice", "path": str(Path("..") / ".." / "fixture.jsonl")}])
    (tmp_path / "fixture.jsonl").write_text(ARC_TINY.read_text())
    monkeypatch.chdir(tmp_path / "project")  # `../../fixture.jsonl` from here would be outside tmp_path
    (spec,) = load_task_file(Path("eval") / "tasks.yaml")
    assert spec.path == str((tmp_path / "fixture.jsonl").resolve())
    assert len(load_tasks([spec]).multiple_choice["arc_tiny"]) == 12


def test_absolute_paths_and_hub_ids_are_kept(tmp_path):
    specs = load_task_file(
        _write(
            tmp_path / "tasks.json",
            [
                {"name": "local", "kind": "multiple_choice", "path": str(ARC_TINY)},
                {"name": "hub_arc", "kind": "multiple_choice", "path": "allenai/ai2_arc", "config_name": "ARC-Easy", "split": "test"},
            ],
        )
    )
    assert specs[0].path == str(ARC_TINY)
    assert specs[1].path == "allenai/ai2_arc" and specs[1].config_name == "ARC-Easy"


OK = {"name": "quiz", "kind": "multiple_choice", "path": str(ARC_TINY)}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{**OK, "question_col": "q"}], r"entry 0 \('quiz'\): unknown key 'question_col'; allowed keys: name, kind, path"),
        ([OK, {"name": "math", "path": str(ARC_TINY)}], r"entry 1 \('math'\): missing field 'kind'"),
        ([{"kind": "math", "path": str(ARC_TINY)}], r"entry 0: missing field 'name'"),
        ([{"name": "quiz", "kind": "math"}], r"entry 0 \('quiz'\): missing field 'path'"),
        ([{**OK, "kind": "generation"}], r"entry 0 \('quiz'\), field 'kind': must be 'math' or 'multiple_choice', got 'generation'"),
        ([{**OK, "name": "arc_easy"}], r"entry 0 \('arc_easy'\), field 'name': 'arc_easy' is the name of a built-in task"),
        ([OK, {**OK, "kind": "math"}], r"entry 1 \('quiz'\), field 'name': entry 0 has the same name"),
        ([{**OK, "name": "my quiz/1"}], r"entry 0 \('my quiz/1'\), field 'name': .* may hold only letters"),
        ([{**OK, "split": 3}], r"entry 0 \('quiz'\), field 'split': expected a string, got int"),
        ([{**OK, "path": "data/missing.jsonl"}], r"entry 0 \('quiz'\), field 'path': 'data/missing.jsonl' resolves to .*missing.jsonl, which does not exist"),
        ([{**OK, "path": "/nowhere/quiz.jsonl"}], r"entry 0 \('quiz'\), field 'path': /nowhere/quiz.jsonl does not exist"),
        (["quiz"], r"entry 0: expected a mapping"),
        ([], r"expected a non-empty list of task entries"),
        ({"task": [OK]}, r"may only have the key 'tasks'"),
    ],
)
def test_errors_name_the_file_the_entry_and_the_field(tmp_path, entries, message):
    path = _write(tmp_path / "my_tasks.yaml", entries)
    with pytest.raises(ValueError, match=message) as error:
        load_task_file(path)
    assert str(error.value).startswith(f"Task file {path}")


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml does not exist"):
        load_task_file(tmp_path / "nope.yaml")
    (tmp_path / "tasks.toml").write_text("x = 1\n")
    with pytest.raises(ValueError, match=r"unknown format '.toml'; use .yaml, .yml or .json"):
        load_task_file(tmp_path / "tasks.toml")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(ValueError, match=r"bad.json: not valid JSON"):
        load_task_file(tmp_path / "bad.json")
    (tmp_path / "bad.yaml").write_text("- name: [unclosed\n")
    with pytest.raises(ValueError, match=r"bad.yaml: not valid YAML"):
        load_task_file(tmp_path / "bad.yaml")


def test_combine_builtin_names_and_user_specs():
    user = load_task_file(FIXTURES / "evaluation_tasks.yaml")
    tasks = combine_tasks(["gsm8k", "arc_easy"], user)
    assert [t.name for t in tasks] == ["gsm8k", "arc_easy", "arc_easy_tiny", "gsm8k_tiny"]
    assert combine_tasks([], user) == user
    with pytest.raises(ValueError, match=r"'arc_easy_tiny' is named twice \(in the user tasks and in the user tasks\)"):
        combine_tasks([], [*user, user[0]])
    with pytest.raises(ValueError, match=r"'arc_easy' is named twice \(in the built-in tasks and in the user tasks\)"):
        combine_tasks(["arc_easy"], [TaskSpec("arc_easy", "multiple_choice", path=str(ARC_TINY))])
    with pytest.raises(ValueError, match="Unknown task 'arc'"):
        combine_tasks(["arc"], user)


SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the project's shared data is not on this machine")
def test_the_example_task_file_reads_the_shared_data():
    example = Path(__file__).resolve().parents[2] / "examples" / "evaluation_tasks.yaml"
    specs = load_task_file(example)
    assert [s.name for s in specs] == ["gsm8k_local", "arc_challenge_local", "hellaswag_local"]
    data = load_tasks(specs, config=EvaluationConfig(limit=2))
    assert data.multiple_choice["hellaswag_local"][0].query.startswith("Roof shingle removal: ")
    assert len(data.math["gsm8k_local"]) == 2 and len(data.multiple_choice["arc_challenge_local"]) == 2
