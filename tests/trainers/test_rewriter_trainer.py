import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import GOOD_REWRITES, GSM8K_ROWS, good_rewrite_for, make_dataset

from hf_patchdist.generation import StaticBackend
from hf_patchdist.rewards import completion_text
from hf_patchdist.rewriter import REWRITER_CONFIG_NAME, Rewriter
from hf_patchdist.trainers.rewriter_grpo_config import RewriterGRPOConfig
from hf_patchdist.trainers.rewriter_trainer import RewriterTrainer, check_group_placement
from hf_patchdist.verifiers import GRPO_GATE, get_verifier
from hf_patchdist.verifiers.text_checks import strip_calculator_annotations


def tiny_args(output_dir, **overrides):
    settings = dict(
        max_steps=2, per_device_train_batch_size=4, num_generations=4, max_completion_length=12, lora_r=4, lora_alpha=8,
        report_to="none", bf16=False, use_cpu=True, save_strategy="no", gradient_checkpointing=False, seed=0,
    )
    settings.update(overrides)
    return RewriterGRPOConfig(str(output_dir), **settings)


def test_defaults_follow_the_paper(tmp_path):
    args = RewriterGRPOConfig(str(tmp_path), use_cpu=True)
    assert (args.beta, args.learning_rate, args.lambda_dist, args.lambda_div) == (0.001, 3e-6, 0.35, 0.5)
    assert (args.lora_r, args.lora_alpha, args.lora_target_modules) == (64, 32, "all-linear")
    assert args.verifier == {"name": "math", "strict": True, "max_reference_copy": 0.7, "min_step_ratio": 0.6, "require_grounded_operands": True}
    assert args.generation_batch_size % args.num_generations == 0


@pytest.mark.parametrize("fmt", ["plain", "messages"])
def test_train_save_and_load_the_rewriter(tiny_model_dir, tmp_path, fmt):
    trainer = RewriterTrainer(model=tiny_model_dir, args=tiny_args(tmp_path / "out"), train_dataset=make_dataset(fmt))
    assert set(trainer.train_dataset.column_names) == {"prompt", "question", "expert_answer", "patch_row_id", "qa_context"}
    assert trainer.train_dataset[0]["prompt"][-1]["content"].startswith("Question:\n" + GSM8K_ROWS[0]["question"])
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "patch/feasible_fraction" in entry]
    assert logs and "completions/mean_length" in logs[0] and "rewards/patch_reward/mean" in logs[0]

    folder = tmp_path / "out"
    saved = json.loads((folder / REWRITER_CONFIG_NAME).read_text())
    assert saved["has_adapter"] and saved["base_model"] == tiny_model_dir
    assert saved["training_summary"]["global_step"] == 2 and saved["training_summary"]["num_generations"] == 4
    assert saved["verifier"]["strict"] is False, "the saved rewriter trims at data-building time"
    assert saved["verifier"]["max_reference_copy"] is None, "the saved rewriter keeps the Stage II gate"
    assert (folder / "adapter_model.safetensors").is_file()
    card = (folder / "README.md").read_text()
    assert "hf-patchdist" in card and "[More Information Needed]" not in card, "the rewriter's card, not PEFT's template"

    rewriter = Rewriter.from_pretrained(folder, backend=StaticBackend(good_rewrite_for), show_progress=False)
    assert getattr(rewriter.model, "peft_config", None), "the adapter must be loaded"
    patched = make_dataset(fmt).map(rewriter, batched=True)
    assert patched["patch_source"] == ["rewrite"] * len(GSM8K_ROWS)


def _fixed_rollout(texts_by_row):
    """A TRL rollout_func returning given completions, so a real GRPO step has several feasible candidates per group."""
    position = {"i": 0}

    def rollout(prompts, trainer):
        tokenizer = trainer.processing_class
        prompt_ids, completion_ids = [], []
        for prompt in prompts:
            prompt_ids.append(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False))
            question = prompt[-1]["content"]
            options = next(texts for key, texts in texts_by_row.items() if key in question)
            text = options[position["i"] % len(options)]
            position["i"] += 1
            completion_ids.append(tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


def test_group_terms_reach_training(tiny_model_dir, tmp_path):
    texts = {
        "Natalia": [GOOD_REWRITES[72], "Half of 48 is 48 / 2 = 24. So 24 + 48 = 72 clips were sold.\n#### 72",
                    "April gave 48 clips; May gave 48 / 2 = 24 clips; the sum is 48 + 24 = 72.\n#### 72", "#### 72"],
        "Weng": [GOOD_REWRITES[10], "12 / 60 = 0.2 dollars a minute, and 0.2 * 50 = 10 dollars in all.\n#### 10",
                 "The answer is 10.\n#### 10", "Per minute: 12 / 60 = 0.2. Fifty minutes: 50 * 0.2 = 10.\n#### 10"],
    }
    args = tiny_args(tmp_path / "out", max_steps=1, per_device_train_batch_size=8, logging_steps=1)
    trainer = RewriterTrainer(
        model=tiny_model_dir, args=args, train_dataset=make_dataset("plain", GSM8K_ROWS[:2]), rollout_func=_fixed_rollout(texts)
    )
    trainer.train()
    log = next(entry for entry in trainer.state.log_history if "patch/r_dist" in entry)
    assert log["patch/feasible_fraction"] == pytest.approx(6 / 8)
    assert log["patch/r_dist_std"] > 0.01, "r_dist must not be 0.5 everywhere"
    assert log["patch/r_div"] > 0.0, "r_div must not be 0 everywhere"


def test_group_splitting_configuration_is_refused():
    split = SimpleNamespace(per_device_train_batch_size=2, steps_per_generation=1, num_generations=4)
    with pytest.raises(ValueError, match="per_device_train_batch_size"):
        check_group_placement(split)
    check_group_placement(SimpleNamespace(per_device_train_batch_size=2, steps_per_generation=2, num_generations=4))


def test_rows_that_cannot_be_rewritten_are_counted_not_silently_dropped(tiny_model_dir, tmp_path, caplog):
    from datasets import Dataset

    rows = [*GSM8K_ROWS[:2], {"question": "Say hi", "answer": "Hello!"}]
    with caplog.at_level("WARNING"):
        trainer = RewriterTrainer(model=tiny_model_dir, args=tiny_args(tmp_path), train_dataset=Dataset.from_list(rows))
    assert len(trainer.train_dataset) == 2
    assert trainer.skipped_rows == {"reference_without_final_answer": 1}
    assert "leaves out 1 of 3 rows" in caplog.text


def test_under_accelerate_every_reward_call_sees_whole_groups(tiny_model_dir, tmp_path):
    script = Path(__file__).parents[1] / "scripts" / "grpo_under_accelerate.py"
    accelerate = Path(sys.executable).parent / "accelerate"
    # accelerate 1.15 runs `launch --cpu --num_processes 2` as ONE process (its simple launcher);
    # the torchrun launcher with ACCELERATE_USE_CPU gives two gloo processes on a CPU machine.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    ok = subprocess.run([*cmd, str(script), tiny_model_dir, str(tmp_path / "ok"), "4", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-3000:]
    seen = []
    for rank in (0, 1):
        calls = json.loads((tmp_path / "ok" / f"calls-{rank}.json").read_text())
        assert calls and all(call["whole_groups"] for call in calls), calls
        seen.append([call["row_ids"] for call in calls])
    assert seen[0] != seen[1], "the two processes must score different groups"
    # 2 completions per process with K = 4: GRPOConfig accepts it (global 4), the trainer must not.
    bad = subprocess.run([*cmd, str(script), tiny_model_dir, str(tmp_path / "bad"), "2", "4"], env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0
    assert "would be split between processes" in bad.stderr


def test_embedded_alias_is_recorded_with_its_provenance(tmp_path):
    config = RewriterTrainer._build_rewriter_config(RewriterGRPOConfig(str(tmp_path), use_cpu=True), "smollm2-135m-instruct")
    assert config.base_model == "smollm2-135m-instruct"
    assert config.base_model_hub_original == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert len(config.base_model_gguf_sha256) == 64
    assert config.has_adapter and config.verifier["strict"] is False


def test_a_saved_rewriter_keeps_the_stage_ii_gate(tiny_model, tmp_path):
    """The training gate minus its GRPO-only checks: a copy of the expert answer and trailing text pass in Stage II."""
    config = RewriterTrainer._build_rewriter_config(RewriterGRPOConfig(str(tmp_path), use_cpu=True), "smollm2-135m-instruct")
    training = get_verifier(GRPO_GATE).to_dict()
    assert config.verifier == {**training, "strict": False, "max_reference_copy": None, "min_step_ratio": None}
    assert config.verifier["max_question_copy"] == training["max_question_copy"] is not None, "the other checks stay"

    row = GSM8K_ROWS[0]
    copy = strip_calculator_annotations(row["answer"])  # the expert answer, word for word
    trailing = GOOD_REWRITES[72] + "\nNow another question: what is 2+2?"
    assert [get_verifier(GRPO_GATE)(t, row["answer"], question=row["question"]).reason for t in (copy, trailing)] == [
        "copies_reference", "trailing_text"]
    model, tokenizer = tiny_model
    for text, kept, source in ((copy, copy, "copy"), (trailing, GOOD_REWRITES[72], "rewrite")):
        rewriter = Rewriter(model, tokenizer, config=config, backend=StaticBackend([text]), show_progress=False)
        patched = make_dataset("plain", [row]).map(rewriter, batched=True)
        assert patched["patch_source"] == [source] and patched["answer"] == [kept]


def test_the_grpo_gate_zeroes_trailing_text_and_expert_copies_during_training(tiny_model_dir, tmp_path):
    """A real RewriterTrainer step: completions the Stage II gate would keep get reward 0 under the GRPO gate."""
    from hf_patchdist.rewards import completion_text

    copies = {k: strip_calculator_annotations(row["answer"]) for k, row in zip((72, 10), GSM8K_ROWS)}
    trailing = {k: GOOD_REWRITES[k] + "\nNow another question: what is 2+2?" for k in (72, 10)}
    texts = {
        "Natalia": [trailing[72], copies[72], GOOD_REWRITES[72], "Half of 48 is 48 / 2 = 24. So 24 + 48 = 72 clips were sold.\n#### 72"],
        "Weng": [GOOD_REWRITES[10], trailing[10], "12 / 60 = 0.2 dollars a minute, and 0.2 * 50 = 10 dollars in all.\n#### 10", copies[10]],
    }
    args = tiny_args(tmp_path / "out", max_steps=1, per_device_train_batch_size=8, logging_steps=1)
    trainer = RewriterTrainer(
        model=tiny_model_dir, args=args, train_dataset=make_dataset("plain", GSM8K_ROWS[:2]), rollout_func=_fixed_rollout(texts)
    )
    reward = trainer.reward_funcs[0]
    seen = []
    evaluate = reward.evaluate

    def recording(completions, **kwargs):
        seen.append([completion_text(c) for c in completions])
        return evaluate(completions, **kwargs)

    reward.evaluate = recording
    trainer.train()
    assert seen and len(seen[-1]) == 8
    parts = reward.last_components
    verdicts = {text.strip(): (task, reason) for text, task, reason in zip(seen[-1], parts["r_task"], parts["reasons"])}
    for k in (72, 10):
        assert verdicts[trailing[k]] == (0.0, "trailing_text")
        assert verdicts[copies[k]] == (0.0, "copies_reference")
        assert verdicts[GOOD_REWRITES[k]] == (1.0, "")
    log = next(entry for entry in trainer.state.log_history if "patch/feasible_fraction" in entry)
    assert log["patch/feasible_fraction"] == pytest.approx(4 / 8)
    assert log["patch/rejected/trailing_text"] == pytest.approx(2 / 8) and log["patch/rejected/copies_reference"] == pytest.approx(2 / 8)


@pytest.mark.parametrize(
    "args, state, refused",
    [
        (SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=3)), None, "DeepSpeed ZeRO-3"),
        (SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=2)), None, None),
        (SimpleNamespace(deepspeed_plugin=None, fsdp_plugin_args={"fsdp_version": 2}), None, "FSDP"),
        (SimpleNamespace(), SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=3)), "DeepSpeed ZeRO-3"),
        (SimpleNamespace(), SimpleNamespace(deepspeed_plugin=None, fsdp_plugin=object()), "FSDP"),
        (SimpleNamespace(deepspeed_plugin=None, fsdp_plugin_args=None), SimpleNamespace(deepspeed_plugin=None, fsdp_plugin=None), None),
    ],
)
def test_sharded_parameters_are_refused_with_what_works(args, state, refused):
    from hf_patchdist.trainers.rewriter_trainer import check_parameter_sharding

    if refused is None:
        check_parameter_sharding(args, state)
        return
    with pytest.raises(ValueError, match=refused) as error:
        check_parameter_sharding(args, state)
    assert "DDP" in str(error.value) and "ZeRO-1/ZeRO-2" in str(error.value)


def test_zero3_is_refused_at_construction_before_loading(tmp_path, monkeypatch):
    import hf_patchdist.trainers.rewriter_trainer as module

    monkeypatch.setattr(module, "load_model_and_tokenizer", lambda *a, **k: pytest.fail("loaded a model before refusing"))
    args = tiny_args(tmp_path)
    args.deepspeed_plugin = SimpleNamespace(zero_stage=3)  # what TrainingArguments(deepspeed=...) builds (needs DeepSpeed)
    with pytest.raises(ValueError, match="does not support DeepSpeed ZeRO-3"):
        RewriterTrainer(model="anything", args=args, train_dataset=make_dataset("plain"))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # accelerate launch --use_fsdp
    with pytest.raises(ValueError, match="does not support FSDP"):
        RewriterTrainer(model="anything", args=tiny_args(tmp_path), train_dataset=make_dataset("plain"))


def test_gate_reasons_reach_trls_completion_log(tiny_model_dir, tmp_path):
    """log_completions=True: every completion's gate reason and detail land in TRL's completions parquet."""
    import pandas as pd

    copies = {k: strip_calculator_annotations(row["answer"]) for k, row in zip((72, 10), GSM8K_ROWS)}
    texts = {"Natalia": [GOOD_REWRITES[72], copies[72]], "Weng": [copies[10], GOOD_REWRITES[10]]}
    args = tiny_args(tmp_path / "out", max_steps=1, per_device_train_batch_size=8, log_completions=True, logging_steps=1)
    trainer = RewriterTrainer(
        model=tiny_model_dir, args=args, train_dataset=make_dataset("plain", GSM8K_ROWS[:2]), rollout_func=_fixed_rollout(texts)
    )
    trainer.train()
    files = sorted((tmp_path / "out" / "completions").glob("*.parquet"))
    assert files, "TRL wrote no completions table"
    table = pd.read_parquet(files[-1])
    assert {"gate_reason", "gate_detail"} <= set(table.columns)
    # Conversational completions come back from parquet as arrays of message dicts.
    by_text = {completion_text(list(c)).strip(): (r, d) for c, r, d in zip(table["completion"], table["gate_reason"], table["gate_detail"])}
    for k in (72, 10):
        assert by_text[GOOD_REWRITES[k]] == ("pass", "")
        reason, detail = by_text[copies[k]]
        assert reason == "copies_reference" and "expert answer" in detail


def test_a_warm_started_peft_model_is_trained_with_the_reference_at_pi0(tiny_model_dir, tmp_path):
    """A PeftModel is accepted (no second LoraConfig), and TRL's frozen copy of its adapter is not the KL reference."""
    import torch
    from peft import LoraConfig, get_peft_model

    from hf_patchdist.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(tiny_model_dir, dtype="float32", device="cpu")
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    warm = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}
    args = tiny_args(tmp_path / "out", max_steps=1, beta=0.04, learning_rate=1e-2)
    trainer = RewriterTrainer(model=peft_model, args=args, train_dataset=make_dataset("plain", GSM8K_ROWS[:2]), processing_class=tokenizer)
    policy = trainer.accelerator.unwrap_model(trainer.model)
    assert list(policy.peft_config) == ["default"], "no frozen 'ref' copy of the warm start: the reference is pi_0"
    assert trainer.ref_model is None
    trainer.train()
    trained = {n: p for n, p in policy.named_parameters() if "lora_" in n}
    assert set(trained) == set(warm)
    assert any(not torch.equal(trained[n].detach(), warm[n]) for n in warm), "the given adapter is the one trained"

    frozen = get_peft_model(load_model_and_tokenizer(tiny_model_dir, dtype="float32", device="cpu")[0], LoraConfig(r=2, target_modules=["q_proj"]))
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    with pytest.raises(ValueError, match="is_trainable=True"):
        RewriterTrainer(model=frozen, args=tiny_args(tmp_path / "o2"), train_dataset=make_dataset("plain", GSM8K_ROWS[:2]), processing_class=tokenizer)


def test_a_callable_gate_named_in_the_config_needs_trust_remote_code(tiny_model_dir, probe_module, tmp_path):
    from hf_patchdist.verifiers import UntrustedVerifierError

    entry = {"name": "callable", "callable": probe_module.path}
    with pytest.raises(UntrustedVerifierError, match=f"{probe_module.path}.*trust_remote_code"):
        tiny_args(tmp_path, verifier=json.dumps(entry))  # as --verifier or a YAML file gives it
    assert not probe_module.imported()
    args = tiny_args(tmp_path, verifier=entry, trust_remote_code=True)
    assert probe_module.imported()
    trainer = RewriterTrainer(model=tiny_model_dir, args=args, train_dataset=make_dataset("plain"))
    assert trainer.reward_funcs[0].verifier.to_dict()["callable"] == probe_module.path
    assert trainer.rewriter.verifier.to_dict()["callable"] == probe_module.path


def ends_with_final_line(candidate, reference):
    """A gate function of the user's own (module level: a saved rewriter records its import path)."""
    return candidate.strip().endswith(reference.strip().splitlines()[-1])


def test_a_gate_function_given_in_python_needs_no_opt_in(tiny_model_dir, tmp_path):
    from hf_patchdist.verifiers import CallableVerifier

    trainer = RewriterTrainer(model=tiny_model_dir, args=tiny_args(tmp_path, verifier=CallableVerifier(ends_with_final_line)), train_dataset=make_dataset("plain"))
    assert trainer.reward_funcs[0].verifier.fn is ends_with_final_line
    assert trainer.rewriter.verifier.fn is ends_with_final_line


@pytest.mark.parametrize("fmt", ["messages", "conversational_prompt_completion"])
def test_grpo_scores_the_nll_under_the_same_qa_context_as_stage_ii(tiny_model_dir, tmp_path, fmt):
    """System prompt / earlier turns: r_dist must rank rewrites by the NLL that Stage II selects by."""
    from hf_patchdist.formats import detect_dataset_format, read_example

    dataset = make_dataset(fmt)
    trainer = RewriterTrainer(model=tiny_model_dir, args=tiny_args(tmp_path), train_dataset=dataset)
    reward = trainer.reward_funcs[0]
    spec = detect_dataset_format(dataset)
    stage_ii = Rewriter(trainer.model, trainer.processing_class, show_progress=False)
    for index, row in enumerate(trainer.train_dataset):
        example = read_example(dataset[index], spec)
        assert example.context, "the data set has context turns"
        candidate = GOOD_REWRITES[int(example.answer.split("####")[-1])]
        # What TRL passes a reward: every data set column but the prompt, as lists.
        columns = {key: [value] for key, value in row.items() if key != "prompt"}
        grpo_nll = reward.evaluate([candidate], **{k: columns[k] for k in ("question", "expert_answer", "patch_row_id", "qa_context")}).nll[0]
        stage_ii_nll = stage_ii.scorer.score([stage_ii.qa_prompt(example)], [candidate]).nll[0]
        bare_nll = stage_ii.scorer.score([stage_ii.qa_prompt(type(example)(example.question, None))], [candidate]).nll[0]
        assert grpo_nll == stage_ii_nll
        assert abs(grpo_nll - bare_nll) > 1e-5, "the context changes the NLL, so the test can tell the two apart"
        reward(prompts=[row["prompt"]], completions=[candidate], **columns)
        assert reward.last_components["r_task"] == [1.0]


def test_rows_whose_prompt_and_completion_do_not_fit_the_context_are_left_out_as_too_long(tiny_model_dir, tmp_path, caplog):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # GSM8K's rewriting prompts have 165-215 tokens; with 12 completion tokens only row 2 (215) passes 220.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, max_position_embeddings=220)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with caplog.at_level("WARNING"):
        trainer = RewriterTrainer(model=model, processing_class=tokenizer, args=tiny_args(tmp_path), train_dataset=make_dataset("plain"))
    assert trainer.skipped_rows == {"too_long": 1}
    assert trainer.train_dataset["patch_row_id"] == [0, 1, 3]
    assert "too_long" in caplog.text


def test_a_backbone_given_by_name_is_loaded_with_model_init_kwargs_for_the_training_device(tiny_model_dir, tmp_path, monkeypatch):
    import torch

    import hf_patchdist.trainers.rewriter_trainer as module

    trainer = RewriterTrainer(
        model=tiny_model_dir,
        args=tiny_args(tmp_path, model_init_kwargs={"dtype": "bfloat16", "attn_implementation": "eager"}),
        train_dataset=make_dataset("plain"),
    )
    backbone = trainer.accelerator.unwrap_model(trainer.model).get_base_model()
    assert backbone.dtype == torch.bfloat16 and backbone.config._attn_implementation == "eager"
    assert trainer.args.model_init_kwargs == {"dtype": "bfloat16", "attn_implementation": "eager"}, "the user's dict is not changed"

    # On a GPU host the dtype and placement are chosen for the GPU, not for the CPU the weights are read on.
    class Loaded(Exception):
        pass

    seen = {}

    def record(name, **kwargs):
        seen.update(kwargs)
        raise Loaded

    args = tiny_args(tmp_path)
    assert args.device.type == "cpu"  # sets up the process state, as on any host
    monkeypatch.setattr(module, "load_model_and_tokenizer", record)
    monkeypatch.setattr(RewriterGRPOConfig, "device", property(lambda self: torch.device("cuda", 0)))
    with pytest.raises(Loaded):
        RewriterTrainer(model=tiny_model_dir, args=args, train_dataset=make_dataset("plain"))
    assert seen["device"] == "cuda:0" and seen["device_map"] == "auto" and seen["trust_remote_code"] is False
    assert "dtype" not in seen, "'auto': bfloat16 where cuda:0 computes it (load_model_and_tokenizer decides for `device`)"


def _two_row_texts():
    return {
        "Natalia": [GOOD_REWRITES[72], "Half of 48 is 48 / 2 = 24. So 24 + 48 = 72 clips were sold.\n#### 72",
                    "April gave 48 clips; May gave 48 / 2 = 24 clips; the sum is 48 + 24 = 72.\n#### 72", "#### 72"],
        "Weng": ["The answer is 10.\n#### 10", "#### 10", "ten\n#### 10", "#### 11"],
    }


def test_the_rollout_summary_is_logged_every_n_steps_and_printed(tiny_model_dir, tmp_path, capsys):
    """Every patch_summary_steps steps: feasible, zero-spread, length, rejections and copies in log_history and one line."""
    args = tiny_args(tmp_path / "out", max_steps=4, per_device_train_batch_size=8, logging_steps=1, patch_summary_steps=2)
    trainer = RewriterTrainer(
        model=tiny_model_dir, args=args, train_dataset=make_dataset("plain", GSM8K_ROWS[:2]), rollout_func=_fixed_rollout(_two_row_texts())
    )
    trainer.train()
    summaries = [entry for entry in trainer.state.log_history if "patch_summary/feasible_fraction" in entry]
    assert [entry["step"] for entry in summaries] == [2, 4]
    for entry in summaries:
        assert entry["patch_summary/candidates"] == 16  # two steps of 2 groups x 4
        assert entry["patch_summary/feasible_fraction"] == pytest.approx(3 / 8)  # Natalia's first three only
        assert entry["patch_summary/zero_spread_fraction"] == pytest.approx(0.5)  # Weng's group: all rewards 0
        assert entry["patch_summary/mean_completion_length"] > 0
        rejected = {k.removeprefix("patch_summary/rejected/"): v for k, v in entry.items() if k.startswith("patch_summary/rejected/")}
        assert sum(rejected.values()) == pytest.approx(5 / 8)
        assert 0.0 <= entry["patch_summary/copy_share"] <= 1.0 and 0.0 < entry["patch_summary/reference_similarity"] < 0.7
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[patch] steps")]
    assert printed[0].startswith("[patch] steps 1-2: feasible 37.5% of 16, zero-spread groups 50%")
    assert printed[1].startswith("[patch] steps 3-4:")


def test_copies_count_in_the_summary(tiny_model_dir, tmp_path):
    """A feasible candidate keeping half or more of the expert answer's words in order is counted as a copy."""
    from hf_patchdist.verifiers import reference_similarity

    other_words = "Half of 48 is 48 / 2 = 24. So 24 + 48 = 72 clips were sold.\n#### 72"
    texts = {"Natalia": [GOOD_REWRITES[72], other_words], "Weng": [GOOD_REWRITES[10], "#### 10"]}
    shares = [reference_similarity(GOOD_REWRITES[72], GSM8K_ROWS[0]["answer"]), reference_similarity(other_words, GSM8K_ROWS[0]["answer"]),
              reference_similarity(GOOD_REWRITES[10], GSM8K_ROWS[1]["answer"])]
    assert shares[0] >= 0.5 > shares[1] and shares[2] >= 0.5
    args = tiny_args(tmp_path / "out", max_steps=1, per_device_train_batch_size=8, logging_steps=1, patch_summary_steps=1)
    trainer = RewriterTrainer(
        model=tiny_model_dir, args=args, train_dataset=make_dataset("plain", GSM8K_ROWS[:2]), rollout_func=_fixed_rollout(texts)
    )
    trainer.train()
    entry = next(entry for entry in trainer.state.log_history if "patch_summary/copy_share" in entry)
    assert entry["patch_summary/feasible_fraction"] == pytest.approx(6 / 8)  # "#### 10" has no reasoning
    assert entry["patch_summary/copy_share"] == pytest.approx(4 / 6)
    assert entry["patch_summary/reference_similarity"] == pytest.approx(2 * sum(shares) / 6)


def test_a_resumed_run_centres_r_div_on_the_saved_running_mean(tiny_model_dir, tmp_path):
    """The running mean goes into every checkpoint and comes back on resume: step 2's rewards are the same whether
    the run went through or was resumed from step 1's checkpoint (the rollouts are fixed texts, scored under pi_0)."""
    import shutil

    from hf_patchdist.trainers.rewriter_trainer import REWARD_STATE_NAME

    def trainer_for(folder):
        args = tiny_args(folder, max_steps=2, per_device_train_batch_size=8, logging_steps=1, save_strategy="steps", save_steps=1)
        return RewriterTrainer(
            model=tiny_model_dir, args=args, train_dataset=make_dataset("plain", GSM8K_ROWS[:2]), rollout_func=_fixed_rollout(_two_row_texts())
        )

    whole = trainer_for(tmp_path / "whole")
    whole.train()
    # The resumed sampler may put the two rows' groups in the other order: compare the values, not their places.
    step_two = sorted(whole.reward_funcs[0].last_components["r_div"])
    saved = json.loads((tmp_path / "whole" / "checkpoint-1" / REWARD_STATE_NAME).read_text())
    assert saved["0"]["embedding_mean"]["count"] == 3 and len(saved["0"]["embedding_mean"]["mean"]) == 32
    assert any(value > 0 for value in step_two)

    resumed_folder = tmp_path / "resumed"
    shutil.copytree(tmp_path / "whole" / "checkpoint-1", resumed_folder / "checkpoint-1")
    resumed = trainer_for(resumed_folder)
    resumed.train(resume_from_checkpoint=True)
    assert sorted(resumed.reward_funcs[0].last_components["r_div"]) == pytest.approx(step_two, abs=1e-6)

    # Without the saved state the resumed run would centre on nothing (its first call): the check can fail.
    fresh_folder = tmp_path / "fresh"
    shutil.copytree(tmp_path / "whole" / "checkpoint-1", fresh_folder / "checkpoint-1")
    (fresh_folder / "checkpoint-1" / REWARD_STATE_NAME).unlink()
    fresh = trainer_for(fresh_folder)
    fresh.train(resume_from_checkpoint=True)
    assert sorted(fresh.reward_funcs[0].last_components["r_div"]) != pytest.approx(step_two, abs=1e-6)


def test_reward_weights_and_centring_come_from_the_config(tiny_model_dir, tmp_path):
    args = tiny_args(tmp_path / "out", diversity_centering="none")
    trainer = RewriterTrainer(model=tiny_model_dir, args=args, train_dataset=make_dataset("plain", GSM8K_ROWS[:2]))
    assert trainer.reward_funcs[0].embedding_mean is None
    args = tiny_args(tmp_path / "out2", diversity_centering_momentum=0.9)
    trainer = RewriterTrainer(model=tiny_model_dir, args=args, train_dataset=make_dataset("plain", GSM8K_ROWS[:2]))
    assert trainer.reward_funcs[0].embedding_mean.momentum == 0.9
    with pytest.raises(ValueError, match="diversity_centering"):
        tiny_args(tmp_path, diversity_centering="group_mean")
    with pytest.raises(ValueError, match="patch_summary_steps"):
        tiny_args(tmp_path, patch_summary_steps=-1)
