"""benchmarks/forgetting.py's pieces that run without the real model: the goal checks, seeds pooled into a mean and
a range, the wall-time plan, the SDFT step mapping and teacher prompt, and the pi_0 scoring of SDFT's samples
(on a tiny model, through a real SDFTTrainer step)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


summary = load("forgetting_summary")
methods_module = load("forgetting_methods")

SFT = {"kl_general": 0.40, "forgetting_mean": 0.02, "gsm8k": 0.10, "heldout_nll_gain": 0.50, "target_nll": 1.37}
STRIPPED = {"kl_general": 0.36, "forgetting_mean": 0.01, "gsm8k": 0.10, "heldout_nll_gain": 0.48, "target_nll": 1.31}
PROMPTED = {"target_nll": 1.25}
SDFT = {"kl_general": 0.25, "heldout_nll_gain": 0.30}


def test_goal_met_part_by_part_when_the_rl_patch_halves_the_drift_at_the_same_gain():
    rl = {"kl_general": 0.15, "forgetting_mean": 0.0, "gsm8k": 0.09, "heldout_nll_gain": 0.46, "target_nll": 1.10}
    goals = summary.goal_checks({"sft": SFT, "sft_stripped": STRIPPED, "prompted_patch": PROMPTED, "sdft": SDFT, "rl_patch": rl})
    vs_sft = goals["checks"]["rl_patch_vs_sft"]["parts"]
    assert vs_sft["kl_general_ratio"]["value"] == pytest.approx(0.375) and vs_sft["kl_general_ratio"]["met"]
    assert vs_sft["gsm8k_no_worse"]["met"]  # 0.09 is one item per 100 below 0.10: still allowed
    assert vs_sft["heldout_nll_gain_ratio"]["value"] == pytest.approx(0.92)
    assert vs_sft["target_nll_order"]["value"] == [1.37, 1.25, 1.10] and vs_sft["target_nll_order"]["met"]
    assert goals["checks"]["rl_patch_vs_sft_stripped"]["meets_goal"]
    assert goals["checks"]["rl_patch_vs_sdft"]["meets_goal"]
    assert goals["meets_goal"] is True


def test_goal_not_met_when_one_part_fails_and_each_failure_is_named():
    # As drifting as SFT (the first run: 0.400 vs 0.379) and two items per 100 worse on GSM8K.
    rl = {"kl_general": 0.40, "forgetting_mean": 0.0, "gsm8k": 0.08, "heldout_nll_gain": 0.50, "target_nll": 1.10}
    goals = summary.goal_checks({"sft": SFT, "sft_stripped": STRIPPED, "prompted_patch": PROMPTED, "sdft": SDFT, "rl_patch": rl})
    parts = goals["checks"]["rl_patch_vs_sft"]["parts"]
    assert not parts["kl_general_ratio"]["met"] and not parts["gsm8k_no_worse"]["met"]
    assert parts["forgetting_no_worse"]["met"] and parts["heldout_nll_gain_ratio"]["met"]
    assert not goals["checks"]["rl_patch_vs_sdft"]["parts"]["kl_general_no_higher"]["met"]
    assert goals["meets_goal"] is False


def test_a_gain_that_cannot_be_compared_or_a_missing_method_is_not_met():
    rl = {"kl_general": 0.1, "forgetting_mean": 0.0, "gsm8k": 0.1, "heldout_nll_gain": 0.2, "target_nll": 1.0}
    no_gain = {**SFT, "heldout_nll_gain": -0.1}
    goals = summary.goal_checks({"sft": no_gain, "sft_stripped": STRIPPED, "prompted_patch": PROMPTED, "rl_patch": rl})
    part = goals["checks"]["rl_patch_vs_sft"]["parts"]["heldout_nll_gain_ratio"]
    assert part["met"] is False and part["cannot_tell"]
    assert goals["checks"]["rl_patch_vs_sdft"] == {"missing": True, "meets_goal": False}
    assert goals["meets_goal"] is False


def test_the_control_plain_sft_against_itself_fails():
    seed0, seed1 = {**SFT, "seed": 0}, {**SFT, "seed": 1, "kl_general": 0.41, "heldout_nll_gain": 0.49}
    goals = summary.goal_checks({"sft": SFT}, [seed0, seed1])
    assert goals["control"]["parts"]["kl_general_ratio"]["value"] == pytest.approx(1.025)
    assert goals["control_fails_goal"] is True
    assert summary.goal_checks({"sft": SFT}, [seed0])["control_fails_goal"] is None


def test_seeds_pool_into_mean_per_seed_values_and_range():
    runs = [{"seed": 0, "kl_general": 0.4, "gsm8k_n": 100, "lr": 3e-4, "target_nll": None}, {"seed": 1, "kl_general": 0.3, "gsm8k_n": 100, "lr": 3e-4, "target_nll": None}]
    row = summary.aggregate_seeds(runs, ["kl_general", "gsm8k_n", "lr", "target_nll", "absent"])
    assert row["kl_general"] == pytest.approx(0.35) and row["per_seed"]["kl_general"] == [0.4, 0.3]
    assert row["seed_range"]["kl_general"] == [0.3, 0.4]
    assert row["gsm8k_n"] == 100 and row["lr"] == 3e-4 and row["target_nll"] is None and "absent" not in row
    assert row["seeds"] == [0, 1]
    assert summary.seed_spread({"sft": row}) == {"sft": {"kl_general": (0.3, 0.4)}}
    single = summary.aggregate_seeds(runs[:1], ["kl_general"])
    assert single == {"kl_general": 0.4, "seeds": [0]}


def test_estimate_counts_each_stage_once():
    rates = {"sft_step": 10.0, "sdft_step": 30.0, "eval": 100.0, "kl_reference": 50.0, "rewrite_row": 2.0}
    plan = summary.estimate_run(
        train_rows=80, batch_size=8, sweep=[(1e-4, 1), (3e-4, 1)], budget=(3e-4, 1),
        methods=["base", "sft", "sdft", "rl_patch"], seeds=[0, 1], seeded_methods={"sft", "sdft", "rl_patch"}, rates=rates,
    )
    stages = {s["stage"]: s["seconds"] for s in plan["stages"]}
    assert "sft seed 0" not in stages  # the sweep's run at the chosen budget
    assert stages["sft seed 1"] == 10 * 10 + 100
    assert stages["sdft seed 0"] == stages["sdft seed 1"] == 10 * 30 + 100
    assert stages["rl_patch seed 0"] == 10 * 10 + 100 + 80 * 2 and stages["rl_patch seed 1"] == 10 * 10 + 100  # patched set cached
    assert plan["total_s"] == pytest.approx(sum(stages.values())) and len(stages) == 8


def test_sft_stripped_trains_on_answers_without_calculator_annotations():
    rows = [{"question": "Q?", "answer": "48/2 = <<48/2=24>>24 clips.\n#### 24"}]
    assert methods_module.sft_dataset(rows)[0]["completion"][0]["content"] == rows[0]["answer"]
    stripped = methods_module.sft_dataset(rows, strip_annotations=True)[0]
    assert stripped["completion"][0]["content"] == "48/2 = 24 clips.\n#### 24"
    assert stripped["prompt"] == [{"role": "user", "content": "Q?"}]


def test_sdft_step_covers_the_rows_of_one_sft_step_and_the_teacher_sees_the_demonstration(tmp_path):
    from trl.experimental.sdft import SDFTConfig
    from trl.experimental.sdft.sdft_trainer import DemonstrationTeacherContextBuilder

    sft_kwargs = {"output_dir": str(tmp_path), "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "learning_rate": 3e-4,
                  "loss_type": "nll", "max_length": 1024, "bf16": False, "use_cpu": True, "report_to": "none"}
    config = SDFTConfig(**methods_module.sdft_config_kwargs(sft_kwargs, methods_module.SDFTOptions()))
    assert methods_module.distinct_rows_per_step(config) == 8
    assert (config.generation_batch_size, config.num_generations, config.steps_per_generation) == (8, 1, 1)
    assert config.teacher_model_kind == "base" and config.num_loss_tokens_to_skip == 3 and config.max_completion_length == 256
    with pytest.raises(ValueError, match="divisible"):
        methods_module.sdft_config_kwargs(sft_kwargs, methods_module.SDFTOptions(num_generations=3))

    row = methods_module.sdft_dataset([{"question": "Q?", "answer": "1+1 = <<1+1=2>>2\n#### 2"}])[0]
    fake_trainer = type("T", (), {"args": config})()
    teacher = DemonstrationTeacherContextBuilder(fake_trainer)._compose_teacher_prompt(row["prompt"], row["privileged_context"])
    assert teacher == [{"role": "user", "content": "Q?\n\nThis is an example for a response to the question:\n1+1 = <<1+1=2>>2\n#### 2\n\n"
                                                   "Now answer with a response of your own, including the thinking process."}]
    assert methods_module.sdft_dataset([{"question": "Q?", "answer": "<<1+1=2>>2"}], strip_demonstration=True)[0]["privileged_context"] == "2"


def test_sample_nll_recorder_scores_what_the_student_sampled(tiny_model, tmp_path):
    import torch

    from hf_patchdist.scoring import QAScorer, render_qa_prompt

    model, tokenizer = tiny_model
    recorder = methods_module.SampleNLLRecorder(model, tokenizer, tmp_path / "samples.jsonl")
    pad = tokenizer.pad_token_id
    short, long = tokenizer(render_qa_prompt(tokenizer, "Hi?"))["input_ids"], tokenizer(render_qa_prompt(tokenizer, "What is 2+3?"))["input_ids"]
    answer = tokenizer("2+3 = 5\n#### 5", add_special_tokens=False)["input_ids"]
    prompt_ids = torch.tensor([[pad] * (len(long) - len(short)) + short, long])  # left padded, as TRL pads prompts
    completion_ids = torch.tensor([answer + [tokenizer.eos_token_id], answer[:2] + [tokenizer.eos_token_id] + [pad] * (len(answer) - 2)])
    state = type("S", (), {"global_step": 0})()
    recorder.on_self_distillation_batch_prepared(None, state, None, prompt_ids=prompt_ids, completion_ids=completion_ids)
    recorder.on_self_distillation_batch_prepared(None, state, None, prompt_ids=prompt_ids, completion_ids=completion_ids)  # resumed step: counts once
    entries = recorder.entries()
    assert len(entries) == 1 and entries[0]["prompts"][0] == render_qa_prompt(tokenizer, "Hi?")
    assert entries[0]["samples"] == ["2+3 = 5\n#### 5", tokenizer.decode(answer[:2])]
    expected = QAScorer(model, tokenizer).score([render_qa_prompt(tokenizer, "Hi?")], ["2+3 = 5\n#### 5"]).nll[0]
    assert entries[0]["nll"][0] == pytest.approx(expected, rel=1e-5)
    result = recorder.summary()
    assert result["samples_scored"] == 2 and math.isfinite(result["sample_nll"])


def test_sdft_trains_one_step_with_a_local_base_teacher_and_reports_its_samples(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer

    from hf_patchdist.models import load_model_and_tokenizer

    base, tokenizer = load_model_and_tokenizer(tiny_model_dir, dtype="float32", device="cpu")
    student = AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # config._name_or_path: the local folder the teacher reloads
    sft_kwargs = {"output_dir": str(tmp_path / "run"), "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 1e-3,
                  "max_steps": 1, "bf16": False, "use_cpu": True, "report_to": "none", "save_strategy": "no", "gradient_checkpointing": False}
    config = SDFTConfig(**methods_module.sdft_config_kwargs(sft_kwargs, methods_module.SDFTOptions(max_completion_length=6)))
    rows = [{"question": "What is 1+1?", "answer": "1+1 = 2\n#### 2"}, {"question": "What is 2+2?", "answer": "2+2 = 4\n#### 4"}]
    recorder = methods_module.SampleNLLRecorder(base, tokenizer, tmp_path / "samples.jsonl")
    trainer = SDFTTrainer(model=student, args=config, train_dataset=methods_module.sdft_dataset(rows), processing_class=tokenizer, callbacks=[recorder])
    trainer.train()
    entries = recorder.entries()
    assert [e["step"] for e in entries] == [0] and len(entries[0]["samples"]) == 2
    assert {p.split("<|im_start|>user\n")[1].split("<|im_end|>")[0] for p in entries[0]["prompts"]} == {"What is 1+1?", "What is 2+2?"}
    assert recorder.summary()["samples_scored"] + recorder.summary()["samples_unscored"] == 2


def test_an_interrupted_sdft_run_resumes_from_its_checkpoint_and_keeps_the_earlier_samples(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer

    from hf_patchdist.models import load_model_and_tokenizer

    base, tokenizer = load_model_and_tokenizer(tiny_model_dir, dtype="float32", device="cpu")
    rows = [{"question": f"What is {i}+{i}?", "answer": f"{i}+{i} = {2 * i}\n#### {2 * i}"} for i in range(4)]
    recorder = methods_module.SampleNLLRecorder(base, tokenizer, tmp_path / "samples.jsonl")

    def trainer(max_steps: int):
        kwargs = {"output_dir": str(tmp_path / "run"), "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 1e-3,
                  "max_steps": max_steps, "bf16": False, "use_cpu": True, "report_to": "none", "save_strategy": "steps", "save_steps": 1,
                  "gradient_checkpointing": False, "seed": 0}
        config = SDFTConfig(**methods_module.sdft_config_kwargs(kwargs, methods_module.SDFTOptions(max_completion_length=4)))
        student = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        return SDFTTrainer(model=student, args=config, train_dataset=methods_module.sdft_dataset(rows), processing_class=tokenizer, callbacks=[recorder])

    trainer(1).train()  # "interrupted" after its first step, checkpoint-1 written
    resumed = trainer(2)
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-1"))
    assert resumed.state.global_step == 2
    assert [e["step"] for e in recorder.entries()] == [0, 1]


def test_stripped_patch_is_the_prompted_patch_on_stripped_answers(tmp_path):
    forgetting = load("forgetting")
    args = forgetting.parse_args(["--methods", "stripped_patch,prompted_patch", "--results-dir", str(tmp_path), "--work-dir", str(tmp_path / "work"), "--precision", "fp32"])
    benchmark = forgetting.ForgettingBenchmark(args)
    assert benchmark.methods == ["prompted_patch", "stripped_patch"]
    budget = forgetting.Budget.parse("3e-4:1")
    stripped, prompted = benchmark.train_settings("stripped_patch", budget, 0), benchmark.train_settings("prompted_patch", budget, 0)
    assert stripped["targets"] == "expert answers without <<...>> calculator annotations" and "targets" not in prompted
    assert stripped["rewriter"] == prompted["rewriter"] == f"prompted:{args.model}" and stripped["gate"] == prompted["gate"]
    assert summary.estimate_run(
        train_rows=80, batch_size=8, sweep=[], budget=(3e-4, 1), methods=["stripped_patch"], seeds=[0], seeded_methods=set(),
        rates={"sft_step": 10.0, "eval": 100.0, "kl_reference": 50.0, "rewrite_row": 2.0, "sdft_step": 30.0},
    )["total_s"] >= 80 * 2
