"""`hf-patchdist sft` and `train-rewriter` on TRL's parser: every config field, YAML, the former flags."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import GSM8K_ROWS

from hf_patchdist.cli import legacy, main
from hf_patchdist.cli.sft import build_sft_trainer, parse_sft_args
from hf_patchdist.cli.train_rewriter import build_rewriter_trainer, parse_train_rewriter_args


ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PARSE = {"sft": parse_sft_args, "train-rewriter": parse_train_rewriter_args}


@pytest.fixture
def gsm8k_jsonl(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in GSM8K_ROWS))
    return path


def parse(command: str, argv: list[str]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return PARSE[command](argv)


def field(parsed, name: str):
    """The value of `name` in whichever of the parsed dataclasses has it (they share no field)."""
    holders = [obj for obj in parsed if hasattr(obj, name)]
    assert len(holders) == 1, f"{name} is in {len(holders)} of the parsed dataclasses"
    return getattr(holders[0], name)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


HEAVY = ("torch", "transformers", "datasets", "trl")


# ---------------------------------------------------------------------- lazy parsers
def test_top_level_help_imports_neither_torch_nor_trl():
    code = (
        "import sys\nfrom hf_patchdist.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('LOADED=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = run_python(code)
    assert "sft" in result.stdout and "train-rewriter" in result.stdout
    assert "LOADED=\n" in result.stdout, result.stdout[-300:]


@pytest.mark.parametrize(
    "command, shown, absent",
    [
        ("sft", ["--max_length", "--packing", "--patch_num_candidates", "--use_peft", "--lora_r", "--rewriter_dtype", "--config", "--epochs"],
         ["hf_patchdist.trainers.rewriter_grpo_config", "hf_patchdist.trainers.rewriter_trainer", "trl.trainer.grpo_config"]),
        ("train-rewriter", ["--lambda_dist", "--verifier", "--temperature", "--lora_r", "--prompts_per_step", "--warmup_steps", "--config"],
         ["hf_patchdist.trainers.distribution_patch_config", "hf_patchdist.trainers.distribution_patch_trainer", "trl.trainer.sft_config"]),
    ],
)
def test_command_help_prints_the_config_fields_without_the_other_stack(command, shown, absent):
    code = (
        f"import sys\nfrom hf_patchdist.cli import main\ntry:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        f"print('LOADED=' + ','.join(m for m in {absent!r} if m in sys.modules))"
    )
    result = run_python(code)
    assert f"usage: hf-patchdist {command}" in result.stdout, result.stderr[-2000:]
    for option in shown:
        assert option in result.stdout, option
    assert "LOADED=\n" in result.stdout, result.stdout[-300:]


# ---------------------------------------------------------------------- every former flag
SFT_OLD = [
    (["--dataset", "d.jsonl"], {"dataset_name": "d.jsonl"}),
    (["--dataset-config", "main"], {"dataset_config": "main"}),
    (["--split", "train[:8]"], {"dataset_train_split": "train[:8]"}),
    (["--limit", "3"], {"limit": 3}),
    (["--question-column", "q"], {"patch_question_column": "q"}),
    (["--answer-column", "a"], {"patch_answer_column": "a"}),
    (["--rewriter", "org/rw"], {"rewriter": "org/rw"}),
    (["--num-candidates", "4"], {"patch_num_candidates": 4}),
    (["--rewrite-batch-size", "8"], {"patch_batch_size": 8}),
    (["--max-new-tokens", "32"], {"rewriter_max_new_tokens": 32}),
    (["--dtype", "float32"], {"dtype": "float32", "rewriter_dtype": None}),  # the rewriter follows dtype: see below
    (["--model", "org/m"], {"model_name_or_path": "org/m"}),
    (["--output", "elsewhere"], {"output_dir": "elsewhere"}),
    (["--overwrite"], {"overwrite": True}),
    (["--epochs", "2.5"], {"num_train_epochs": 2.5}),
    (["--max-steps", "7"], {"max_steps": 7}),
    (["--learning-rate", "1e-4"], {"learning_rate": 1e-4}),
    (["--batch-size", "2"], {"per_device_train_batch_size": 2}),
    (["--gradient-accumulation-steps", "4"], {"gradient_accumulation_steps": 4}),
    (["--max-length", "256"], {"max_length": 256}),
    (["--logging-steps", "5"], {"logging_steps": 5}),
    (["--seed", "3"], {"seed": 3}),
    (["--lora-r", "4"], {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": "all-linear"}),
    (["--lora-alpha", "16"], {"lora_alpha": 16}),
    (["--no-bf16"], {"bf16": False}),
    (["--report-to", "none"], {"report_to": []}),
    (["--patch-cache-dir", "/tmp/c"], {"patch_cache_dir": "/tmp/c"}),
    (["--no-patch-cache"], {"patch_use_cache": False}),
]
TRAIN_REWRITER_OLD = [
    (["--dataset", "d.jsonl"], {"dataset_name": "d.jsonl"}),
    (["--dataset-config", "main"], {"dataset_config": "main"}),
    (["--split", "train[1000:]"], {"dataset_train_split": "train[1000:]"}),
    (["--limit", "3"], {"limit": 3}),
    (["--question-column", "q"], {"question_column": "q"}),
    (["--answer-column", "a"], {"answer_column": "a"}),
    (["--model", "org/m"], {"model_name_or_path": "org/m"}),
    (["--output", "elsewhere"], {"output_dir": "elsewhere"}),
    (["--max-steps", "5"], {"max_steps": 5}),
    (["--num-train-epochs", "3"], {"num_train_epochs": 3.0}),
    (["--prompts-per-step", "3"], {"prompts_per_step": 3, "per_device_train_batch_size": 12}),
    (["--num-generations", "2"], {"num_generations": 2, "per_device_train_batch_size": 2}),
    (["--learning-rate", "1e-5"], {"learning_rate": 1e-5}),
    (["--beta", "0.01"], {"beta": 0.01}),
    (["--temperature", "0.7"], {"temperature": 0.7}),
    (["--max-completion-length", "64"], {"max_completion_length": 64}),
    (["--lambda-dist", "0.1"], {"lambda_dist": 0.1}),
    (["--lambda-div", "0.2"], {"lambda_div": 0.2}),
    (["--lora-r", "8"], {"lora_r": 8}),
    (["--lora-alpha", "16"], {"lora_alpha": 16}),
    (["--judge-model", "pi0"], {"judge_model": "pi0"}),
    (["--save-steps", "3"], {"save_steps": 3}),
    (["--seed", "5"], {"seed": 5}),
    (["--resume"], {"resume": True}),
    (["--overwrite"], {"overwrite": True}),
    (["--push-to-hub", "me/rw"], {"push_to_hub": True, "hub_model_id": "me/rw"}),
]
OLD_FLAG_CASES = [("sft", argv, expected) for argv, expected in SFT_OLD] + [
    ("train-rewriter", argv, expected) for argv, expected in TRAIN_REWRITER_OLD
]


@pytest.mark.parametrize("command, argv, expected", OLD_FLAG_CASES, ids=[f"{c}{a[0]}" for c, a, _ in OLD_FLAG_CASES])
def test_a_former_flag_lands_on_its_field(command, argv, expected):
    base = [] if argv[0] == "--output" else ["--output_dir", "out"]
    parsed = parse(command, base + argv)
    assert {name: field(parsed, name) for name in expected} == expected


@pytest.mark.parametrize("command", ["sft", "train-rewriter"])
def test_every_former_flag_is_tested(command):
    tested = {argv[0] for c, argv, _ in OLD_FLAG_CASES if c == command}
    assert tested == set(legacy.old_flags(command))


@pytest.mark.parametrize("command", ["sft", "train-rewriter"])
def test_renamed_flags_shadow_no_field(command):
    from hf_patchdist.cli.sft import make_parser as sft_parser
    from hf_patchdist.cli.train_rewriter import make_parser as train_parser

    parser = sft_parser() if command == "sft" else train_parser()
    options = set(parser._option_string_actions)
    assert not (set(legacy.RENAMED[command]) | set(legacy.SWITCHES[command])) & options
    assert set(legacy.UNCHANGED[command]) <= options  # TRL's parser reads these as they are


def test_a_renamed_flag_warns_with_the_new_spelling():
    with pytest.warns(FutureWarning, match="`--epochs` is deprecated; use `--num_train_epochs`"):
        parse_sft_args(["--output_dir", "out", "--epochs", "2"])
    with pytest.warns(FutureWarning, match="--push_to_hub --hub_model_id me/rw"):
        parse_train_rewriter_args(["--output_dir", "out", "--push-to-hub=me/rw"])


def test_old_lora_rank_zero_is_full_fine_tuning_and_trl_lora_r_needs_use_peft():
    assert field(parse("sft", ["--output_dir", "o", "--lora-r", "0"]), "use_peft") is False
    parsed = parse("sft", ["--output_dir", "o", "--lora_r", "8"])  # TRL's spelling keeps TRL's meaning
    assert (field(parsed, "use_peft"), field(parsed, "lora_r"), field(parsed, "lora_alpha")) == (False, 8, 32)
    parsed = parse("sft", ["--output_dir", "o", "--lora-r", "4", "--lora-alpha", "4"])
    assert (field(parsed, "use_peft"), field(parsed, "lora_r"), field(parsed, "lora_alpha")) == (True, 4, 4)


# ---------------------------------------------------------------------- defaults, YAML and precedence
def test_command_defaults_and_user_values_win(tmp_path):
    parsed = parse("sft", ["--output_dir", "o"])
    assert str(field(parsed, "save_strategy")) in ("no", "SaveStrategy.NO")
    assert field(parsed, "num_train_epochs") == 1.0 and field(parsed, "report_to") == []
    assert field(parsed, "model_name_or_path") == "smollm2-135m-instruct" and field(parsed, "dtype") is None
    parsed = parse("train-rewriter", ["--output_dir", "o"])
    assert field(parsed, "gradient_checkpointing") is False and field(parsed, "save_steps") == 10
    assert field(parsed, "save_total_limit") == 2 and field(parsed, "per_device_train_batch_size") == 4
    assert field(parsed, "lora_target_modules") == "all-linear" and field(parsed, "verifier")["strict"] is True

    config = tmp_path / "run.yaml"
    config.write_text("output_dir: from-yaml\nsave_strategy: epoch\nlearning_rate: 1.0e-4\nmax_steps: 3\n")
    parsed = parse("sft", ["--config", str(config), "--max_steps", "5"])
    assert str(field(parsed, "save_strategy")) in ("epoch", "SaveStrategy.EPOCH")  # YAML over the command's default
    assert (field(parsed, "output_dir"), field(parsed, "learning_rate"), field(parsed, "max_steps")) == ("from-yaml", 1e-4, 5)
    parsed = parse("sft", [f"--config={config}", "--save_strategy", "steps", "--output", "cli"])  # --config=FILE too
    assert str(field(parsed, "save_strategy")) in ("steps", "SaveStrategy.STEPS") and field(parsed, "output_dir") == "cli"
    parsed = parse("train-rewriter", ["--output_dir", "o", "--gradient_checkpointing", "true", "--save_steps", "50"])
    assert field(parsed, "gradient_checkpointing") is True and field(parsed, "save_steps") == 50


def test_the_output_folder_is_required_and_batch_options_must_agree(capsys):
    with pytest.raises(SystemExit):
        parse("sft", ["--max_steps", "1"])
    assert "--output_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("train-rewriter", ["--output_dir", "o", "--prompts_per_step", "2", "--per_device_train_batch_size", "4"])
    assert "prompts_per_step" in capsys.readouterr().err
    parsed = parse("train-rewriter", ["--output_dir", "o", "--per_device_train_batch_size", "8"])
    assert field(parsed, "per_device_train_batch_size") == 8
    with pytest.raises(SystemExit):
        parse("sft", ["--output_dir", "o", "--no_such_option", "1"])
    assert "unrecognized arguments: --no_such_option" in capsys.readouterr().err


def test_unknown_yaml_keys_fail(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("output_dir: o\nno_such_field: 1\n")
    with pytest.raises(ValueError, match="no_such_field"):
        parse("sft", ["--config", str(config)])


# ---------------------------------------------------------------------- typed config fields
def test_verifier_and_lora_target_modules_from_the_command_line_and_from_python():
    from hf_patchdist.trainers import RewriterGRPOConfig
    from hf_patchdist.verifiers import GRPO_GATE, MathVerifier

    parsed = parse("train-rewriter", ["--output_dir", "o", "--verifier", '{"name": "math", "strict": false}', "--lora_target_modules", "q_proj", "v_proj"])
    assert field(parsed, "verifier") == {"name": "math", "strict": False}
    assert field(parsed, "lora_target_modules") == ["q_proj", "v_proj"]
    assert field(parse("train-rewriter", ["--output_dir", "o", "--verifier", "exact"]), "verifier") == "exact"
    with pytest.raises(ValueError, match="unknown verifier 'nope'"):
        parse("train-rewriter", ["--output_dir", "o", "--verifier", "nope"])

    config = RewriterGRPOConfig("o", lora_r=16, lora_target_modules="all-linear")  # the Python API as before
    assert (config.lora_r, config.lora_target_modules, config.verifier) == (16, "all-linear", GRPO_GATE)
    assert RewriterGRPOConfig("o").lora_target_modules == "all-linear"
    verifier = MathVerifier(strict=True)
    assert RewriterGRPOConfig("o", verifier=verifier).verifier is verifier


def test_sft_dtype_sets_the_trained_model_and_the_rewriter(monkeypatch, tmp_path):
    from hf_patchdist.cli import sft

    seen = {}

    class Stop(Exception):
        pass

    def record(rewriter, model, **options):
        seen["rewriter"] = options["dtype"]
        raise Stop

    monkeypatch.setattr(sft, "make_rewriter", record)
    cases = [([], "float32", "auto"), (["--dtype", "bfloat16"], "bfloat16", "bfloat16"), (["--dtype", "float32", "--rewriter_dtype", "bfloat16"], "float32", "bfloat16")]
    for argv, model_dtype, rewriter_dtype in cases:
        script_args, training_args, model_args = parse("sft", ["--output_dir", str(tmp_path), *argv])
        with pytest.raises(Stop):
            build_sft_trainer(script_args, training_args, model_args, train_dataset=[{"question": "q", "answer": "a"}])
        assert (training_args.model_init_kwargs["dtype"], seen["rewriter"]) == (model_dtype, rewriter_dtype)


# ---------------------------------------------------------------------- fields TRL's configs only have reach the trainers
@pytest.mark.parametrize("source", ["yaml", "cli"])
def test_an_sft_config_field_reaches_the_trainer(source, tiny_model_dir, gsm8k_jsonl, tmp_path):
    base = ["--model_name_or_path", tiny_model_dir, "--dataset_name", str(gsm8k_jsonl), "--output_dir", str(tmp_path / "out"),
            "--rewriter_max_new_tokens", "4", "--rewriter_dtype", "float32"]
    if source == "yaml":
        config = tmp_path / "sft.yaml"
        config.write_text("max_length: 64\npacking: true\n")
        argv = ["--config", str(config), *base]
    else:
        argv = ["--max_length", "64", "--packing", *base]
    trainer = build_sft_trainer(*parse("sft", argv))
    assert trainer.args.max_length == 64 and trainer.args.packing is True
    assert trainer.patch_statistics.rows == len(GSM8K_ROWS)


def test_a_grpo_config_field_and_the_model_dtype_reach_the_rewriter_trainer(tiny_model_dir, gsm8k_jsonl, tmp_path):
    import torch

    config = tmp_path / "rewriter.yaml"
    config.write_text("temperature: 0.7\nnum_generations: 2\n")
    argv = ["--config", str(config), "--model_name_or_path", tiny_model_dir, "--dataset_name", str(gsm8k_jsonl),
            "--output_dir", str(tmp_path / "out"), "--warmup_steps", "2", "--lora_r", "2", "--dtype", "bfloat16"]
    trainer = build_rewriter_trainer(*parse("train-rewriter", argv))
    assert trainer.args.temperature == 0.7 and trainer.temperature == 0.7
    assert trainer.args.warmup_steps == 2 and trainer.args.per_device_train_batch_size == 2
    assert trainer.model.peft_config["default"].r == 2
    assert any(p.dtype == torch.bfloat16 for p in trainer.model.parameters())
    assert trainer.args.model_init_kwargs == {"dtype": "bfloat16"}


# ---------------------------------------------------------------------- the example YAML files run
def test_the_sft_example_runs(tiny_model_dir, gsm8k_jsonl, tmp_path, capsys):
    from hf_patchdist import Rewriter

    rewriter = Rewriter(tiny_model_dir).save_pretrained(tmp_path / "tiny-rewriter")
    out = tmp_path / "sft"
    overrides = ["--model_name_or_path", tiny_model_dir, "--rewriter", str(rewriter), "--dataset_name", str(gsm8k_jsonl),
                 "--dataset_train_split", "train", "--output_dir", str(out), "--max_steps", "1", "--rewriter_max_new_tokens", "8",
                 "--per_device_train_batch_size", "2", "--max_length", "256"]
    argv = ["--config", str(EXAMPLES / "sft.yaml"), *overrides]
    script_args, training_args, model_args = parse("sft", argv)
    assert (model_args.model_name_or_path, training_args.output_dir, training_args.max_steps) == (tiny_model_dir, str(out), 1)
    assert training_args.learning_rate == 3e-4 and script_args.rewriter_dtype == "auto"  # from the YAML
    assert main(["sft", *argv]) == 0
    assert "rows: 4" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "patch_statistics.json").read_text())["rows"] == 4


def test_the_train_rewriter_example_runs(tiny_model_dir, gsm8k_jsonl, tmp_path, capsys):
    from hf_patchdist import Rewriter

    out = tmp_path / "rewriter"
    overrides = ["--model_name_or_path", tiny_model_dir, "--dataset_name", str(gsm8k_jsonl), "--dataset_train_split", "train",
                 "--output_dir", str(out), "--max_steps", "1", "--num_generations", "2", "--prompts_per_step", "1",
                 "--max_completion_length", "8", "--lora_r", "2"]
    argv = ["--config", str(EXAMPLES / "train_rewriter.yaml"), *overrides]
    _, training_args, _ = parse("train-rewriter", argv)
    assert (training_args.max_steps, training_args.num_generations, training_args.per_device_train_batch_size) == (1, 2, 2)
    assert training_args.temperature == 0.6 and training_args.lora_dropout == 0.0  # from the YAML
    assert main(["train-rewriter", *argv]) == 0
    assert '"global_step": 1' in capsys.readouterr().out
    assert Rewriter.from_pretrained(out).config.has_adapter
