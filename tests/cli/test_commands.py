import json
from pathlib import Path

import pytest

from hf_patchdist.rewriter import PATCH_COLUMNS
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
    assert patched.column_names == ["question", "answer", *PATCH_COLUMNS]
    stats = json.loads((out / "patch_statistics.json").read_text())
    assert stats["rows"] == 4
    with pytest.raises(SystemExit, match="--overwrite"):
        main(["rewrite", "--dataset", str(gsm8k_jsonl), "--model", tiny_model_dir, "--output", str(out)])


def test_rewrite_can_save_the_rejected_candidates(tiny_model_dir, gsm8k_jsonl, tmp_path, capsys):
    from datasets import load_from_disk

    out = tmp_path / "patched"
    argv = ["rewrite", "--dataset", str(gsm8k_jsonl), "--model", tiny_model_dir, "--output", str(out), "--max-new-tokens", "8"]
    assert main([*argv, "--dtype", "float32", "--save-rejected", "--rewrite-batch-size", "2"]) == 0
    assert "patch_rejected" in capsys.readouterr().out
    patched = load_from_disk(str(out))
    assert patched.column_names[-1] == "patch_rejected"
    # The tiny random model writes nothing the gate accepts: every row lists its one candidate.
    for source, reason, rejected in zip(patched["patch_source"], patched["patch_reason"], patched["patch_rejected"]):
        assert source == "fallback" and len(rejected) == 1
        assert rejected[0]["reason"] == reason and set(rejected[0]) == {"text", "reason", "detail"}


def test_rewrite_with_the_same_seed_samples_the_same_candidates(tiny_model_dir, gsm8k_jsonl, tmp_path):
    from datasets import load_from_disk

    def rejected(seed: int, name: str) -> list:
        out = tmp_path / name
        argv = ["rewrite", "--dataset", str(gsm8k_jsonl), "--model", tiny_model_dir, "--output", str(out), "--max-new-tokens", "8"]
        assert main([*argv, "--limit", "2", "--num-candidates", "2", "--save-rejected", "--seed", str(seed)]) == 0
        return [[c["text"] for c in row] for row in load_from_disk(str(out))["patch_rejected"]]

    first = rejected(7, "a")
    assert rejected(7, "b") == first
    assert rejected(8, "c") != first


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

    # Against a different model, every sign is checked by hand from the two rows of the report: a model
    # against an identical copy gives zeros whatever the conventions.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    perturbed_dir = tmp_path / "perturbed"
    perturbed = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(3)
    with torch.no_grad():
        for parameter in perturbed.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    perturbed.save_pretrained(perturbed_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(perturbed_dir)
    out2 = tmp_path / "eval-perturbed"
    args2 = [*args[:2], str(perturbed_dir), *args[3:]]
    args2[args2.index("--output") + 1] = str(out2)
    assert main(args2) == 0
    report = json.loads((out2 / "results.json").read_text())
    base, tuned = report["methods"]["base"], report["methods"]["model"]
    assert tuned["kl_general"] > 0 and tuned["kl_from_base"] > 0, "KL(pi_0 || tuned) of a different model is positive"
    assert tuned["heldout_answer_nll"] != base["heldout_answer_nll"]
    assert tuned["heldout_nll_gain"] == pytest.approx(base["heldout_answer_nll"] - tuned["heldout_answer_nll"]), "gain = base NLL - tuned NLL"
    assert tuned["gsm8k_gain"] == pytest.approx(tuned["gsm8k"] - base["gsm8k"]), "gain = tuned accuracy - base accuracy"
    if base["arc_easy"]:
        assert tuned["forgetting_arc_easy"] == pytest.approx((base["arc_easy"] - tuned["arc_easy"]) / base["arc_easy"])


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY_ARGS = ["--max-new-tokens", "4", "--kl-prompts", "2", "--kl-tokens", "3", "--dtype", "float32"]


def test_evaluate_user_tasks_only(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["evaluate", "--model", tiny_model_dir, "--tasks", "", "--tasks-file", str(FIXTURES / "evaluation_tasks.yaml"), "--limit", "3", "--output", str(out), *TINY_ARGS]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "arc_easy_tiny acc_norm (n=3)" in printed and "gsm8k_tiny acc (n=3)" in printed
    report = json.loads((out / "results.json").read_text())
    model = report["methods"]["model"]
    assert model["arc_easy_tiny_n"] == model["gsm8k_tiny_n"] == 3 and 0 <= model["arc_easy_tiny"] <= 1 and "arc_easy_tiny_raw" in model
    assert "heldout_answer_nll" in model, "the user math task is the downstream task"
    assert not {"gsm8k", "arc_easy", "hellaswag"} & set(model), "--tasks '' runs no built-in task"
    assert report["config"]["tasks"] == ["arc_easy_tiny", "gsm8k_tiny"]
    assert report["config"]["user_tasks"]["arc_easy_tiny"]["path"] == str(FIXTURES / "data" / "arc_easy_tiny.jsonl")


def test_evaluate_rejects_bad_tasks_before_touching_the_output(tiny_model_dir, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    clash = tmp_path / "tasks.yaml"
    clash.write_text(f"- name: arc_easy\n  kind: multiple_choice\n  path: {FIXTURES / 'data' / 'arc_easy_tiny.jsonl'}\n")
    base = ["evaluate", "--model", tiny_model_dir, "--output", str(out), "--overwrite"]
    cases = [
        (["--tasks-file", str(clash)], r"tasks.yaml, entry 0 \('arc_easy'\), field 'name': 'arc_easy' is the name of a built-in task"),
        (["--tasks", "gsm8k,gsm8k"], r"'gsm8k' is named twice"),
        (["--tasks", "gsm8k,arc"], r"Unknown task 'arc'"),
        (["--tasks", ""], r"nothing to evaluate"),
        (["--tasks-file", str(tmp_path / "missing.yaml")], r"missing.yaml does not exist"),
        (["--lm-eval-include-path", str(tmp_path)], r"--lm-eval-include-path needs --lm-eval-tasks"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit, match=message):
            main(base + extra)
    assert (out / "keep.txt").read_text() == "earlier results"


def test_evaluate_lm_eval_without_the_extra_says_how_to_install(tiny_model_dir, tmp_path, monkeypatch):
    import hf_patchdist.import_utils as import_utils

    monkeypatch.setattr(import_utils, "is_lm_eval_available", lambda: False)
    with pytest.raises(SystemExit, match=r"pip install 'hf-patchdist\[lm-eval\]'"):
        main(["evaluate", "--model", tiny_model_dir, "--lm-eval-tasks", "arc_easy", "--output", str(tmp_path / "eval")])


def test_evaluate_with_lm_eval_tasks_and_a_base(tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("lm_eval")
    from hf_patchdist.evaluation import write_lm_eval_task

    include = write_lm_eval_task(tmp_path / "lm_tasks", "arc_easy_tiny_lm", FIXTURES / "data" / "arc_easy_tiny.jsonl")
    out = tmp_path / "eval"
    args = ["evaluate", "--model", tiny_model_dir, "--base", tiny_model_dir, "--tasks", "", "--tasks-file", str(FIXTURES / "evaluation_tasks.yaml"),
            "--lm-eval-tasks", "arc_easy_tiny_lm", "--lm-eval-include-path", str(include), "--limit", "4", "--output", str(out), *TINY_ARGS]
    assert main(args) == 0
    assert "lm-eval arc_easy_tiny_lm (n=4)" in capsys.readouterr().out
    methods = json.loads((out / "results.json").read_text())["methods"]
    for name in ("model", "base"):
        metrics = methods[name]
        assert metrics["lm_eval/arc_easy_tiny_lm_n"] == 4
        assert metrics["lm_eval/arc_easy_tiny_lm"] == pytest.approx(metrics["arc_easy_tiny"])  # the same items, the same conventions
    assert "forgetting_lm_eval/arc_easy_tiny_lm" in methods["model"]


def test_rewrite_with_a_rewriter_naming_a_callable_verifier_needs_trust_remote_code(tiny_model_dir, gsm8k_jsonl, probe_module, tmp_path):
    from hf_patchdist.rewriter import RewriterConfig
    from hf_patchdist.verifiers import UntrustedVerifierError

    folder = tmp_path / "rw"
    RewriterConfig(base_model=tiny_model_dir, verifier={"name": "callable", "callable": probe_module.path}).save(folder)
    command = ["rewrite", "--dataset", str(gsm8k_jsonl), "--rewriter", str(folder), "--max-new-tokens", "4", "--dtype", "float32"]
    with pytest.raises(UntrustedVerifierError, match="--trust-remote-code"):
        main([*command, "--output", str(tmp_path / "refused")])
    assert not probe_module.imported() and not (tmp_path / "refused").exists()
    assert main([*command, "--output", str(tmp_path / "patched"), "--trust-remote-code"]) == 0
    assert probe_module.imported()


def test_rewrite_options_for_best_of_k_reach_the_rewriter(tiny_model_dir):
    from hf_patchdist.cli.common import build_rewriter
    from hf_patchdist.cli.main import build_parser

    argv = ["rewrite", "--model", tiny_model_dir, "--num-candidates", "4", "--require-lower-nll", "--length-margin", "96", "--output", "x"]
    rewriter = build_rewriter(build_parser().parse_args(argv), tiny_model_dir)
    assert rewriter.generation_settings.length_margin == 96 and rewriter.generation_settings.token_limit(20) == 126
    assert rewriter.config.num_candidates == 4 and rewriter.config.require_lower_nll is True
    assert rewriter.generation_settings.do_sample and rewriter.generation_settings.temperature == 0.6
    default = build_rewriter(build_parser().parse_args(["rewrite", "--model", tiny_model_dir, "--output", "x"]), tiny_model_dir)
    assert default.config.require_lower_nll is False and not default.generation_settings.do_sample


@pytest.mark.parametrize("fmt", ["plain", "messages"])
def test_the_summary_shows_one_accepted_rewrite_next_to_its_expert_answer(tiny_model, fmt):
    from conftest import GOOD_REWRITES, good_rewrite_for, make_dataset

    from hf_patchdist.cli.rewrite import describe_one_rewrite
    from hf_patchdist.generation import StaticBackend
    from hf_patchdist.rewriter import Rewriter

    model, tokenizer = tiny_model
    responses = lambda prompt: good_rewrite_for(prompt) if "Weng" in prompt else "The answer is 5.\n#### 5"
    rewriter = Rewriter(model, tokenizer, backend=StaticBackend(responses), show_progress=False)
    dataset = make_dataset(fmt)
    patched = rewriter.rewrite(dataset)
    shown = describe_one_rewrite(dataset, patched, rewriter)
    index = patched["patch_source"].index("rewrite")
    assert f"row {index}, the median NLL drop of 1;" in shown and f"{patched['patch_nll_original'][index]:.3f} -> {patched['patch_nll_kept'][index]:.3f}" in shown
    expert = GSM8K_ROWS[index]["answer"]
    assert shown.index(expert) < shown.index("--- rewrite ---") < shown.index(GOOD_REWRITES[10])
    nothing = Rewriter(model, tokenizer, backend=StaticBackend(["#### 5"]), show_progress=False)
    assert "No row was rewritten" in describe_one_rewrite(dataset, nothing.rewrite(dataset), nothing)


def test_the_rewrite_shown_is_the_one_with_the_median_nll_drop(tiny_model):
    from conftest import good_rewrite_for, make_dataset

    from hf_patchdist.cli.rewrite import describe_one_rewrite
    from hf_patchdist.generation import StaticBackend
    from hf_patchdist.rewriter import Rewriter

    model, tokenizer = tiny_model
    rewriter = Rewriter(model, tokenizer, backend=StaticBackend(good_rewrite_for), show_progress=False)
    dataset = make_dataset("plain")
    patched = rewriter.rewrite(dataset)
    drops = [o - k for o, k in zip(patched["patch_nll_original"], patched["patch_nll_kept"])]
    assert patched["patch_source"] == ["rewrite"] * 4 and len(set(drops)) == 4
    median = sorted(range(4), key=drops.__getitem__)[2]
    assert f"(row {median}, the median NLL drop of 4;" in describe_one_rewrite(dataset, patched, rewriter)
