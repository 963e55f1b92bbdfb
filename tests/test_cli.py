import json

import pytest
from conftest import GSM8K_ROWS

from hf_patchdist.cli import main


@pytest.fixture
def gsm8k_jsonl(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in GSM8K_ROWS))
    return path


def test_rewrite_saves_the_patched_set_and_prints_a_summary(tiny_model_dir, gsm8k_jsonl, tmp_path, capsys):
    from datasets import load_from_disk

    out = tmp_path / "patched"
    assert main(["rewrite", "--dataset", str(gsm8k_jsonl), "--model", tiny_model_dir, "--output", str(out), "--max-new-tokens", "8", "--dtype", "float32"]) == 0
    printed = capsys.readouterr().out
    assert "rows: 4" in printed and "fallback reasons" in printed
    patched = load_from_disk(str(out))
    assert patched.column_names == ["question", "answer", "patch_source", "patch_reason", "patch_nll_original", "patch_nll_kept"]
    stats = json.loads((out / "patch_statistics.json").read_text())
    assert stats["rows"] == 4
    with pytest.raises(SystemExit, match="--overwrite"):
        main(["rewrite", "--dataset", str(gsm8k_jsonl), "--model", tiny_model_dir, "--output", str(out)])


def test_rewrite_defaults_to_the_builtin_set(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["rewrite", "--model", tiny_model_dir, "--limit", "3", "--output", str(out), "--max-new-tokens", "4"]) == 0
    assert "rows: 3" in capsys.readouterr().out


def test_rewrite_names_a_missing_column(tiny_model_dir, gsm8k_jsonl, tmp_path):
    with pytest.raises(ValueError, match="solution"):
        main(["rewrite", "--dataset", str(gsm8k_jsonl), "--model", tiny_model_dir, "--output", str(tmp_path / "x"), "--answer-column", "solution"])


def test_train_rewriter_runs_and_saves_a_loadable_rewriter(tiny_model_dir, gsm8k_jsonl, tmp_path, capsys):
    from hf_patchdist import Rewriter

    out = tmp_path / "rewriter"
    args = ["train-rewriter", "--dataset", str(gsm8k_jsonl), "--model", tiny_model_dir, "--output", str(out), "--max-steps", "1",
            "--prompts-per-step", "1", "--num-generations", "2", "--max-completion-length", "8", "--lora-r", "2"]
    assert main(args) == 0
    assert '"global_step": 1' in capsys.readouterr().out
    assert Rewriter.from_pretrained(out).config.has_adapter
    with pytest.raises(SystemExit, match="--resume"):
        main(args)


def test_evaluate_writes_a_report(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "gsm8k").mkdir(parents=True)
    (data / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM8K_ROWS))
    (data / "arc_easy").mkdir()
    item = {"id": "a", "question": "What color is the sky?", "choices": ["blue", "green"], "labels": ["A", "B"], "answer_index": 0}
    (data / "arc_easy" / "test.jsonl").write_text(json.dumps(item) + "\n")
    out = tmp_path / "eval"
    args = ["evaluate", "--model", tiny_model_dir, "--base", tiny_model_dir, "--tasks", "gsm8k,arc_easy", "--limit", "2",
            "--data-dir", str(data), "--output", str(out), "--max-new-tokens", "8", "--kl-prompts", "2", "--kl-tokens", "4", "--dtype", "float32"]
    assert main(args) == 0
    assert "forgetting" in capsys.readouterr().out
    report = json.loads((out / "results.json").read_text())
    model = report["methods"]["model"]
    assert model["kl_general"] == 0.0 and model["kl_from_base"] == 0.0, "a model against itself"
    assert "forgetting_arc_easy" in model and (out / "gain_vs_forgetting.png").is_file()
