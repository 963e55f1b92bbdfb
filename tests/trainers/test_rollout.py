"""DecodeLoopRollout: GRPO rollouts through the decode loop, wired into RewriterTrainer by rollout_engine."""

from __future__ import annotations

import pytest
from conftest import GSM8K_ROWS, make_dataset, sharpen_weights

from hf_patchdist.models import load_model_and_tokenizer
from hf_patchdist.trainers.rewriter_grpo_config import RewriterGRPOConfig
from hf_patchdist.trainers.rewriter_trainer import RewriterTrainer
from hf_patchdist.trainers.rollout import DecodeLoopRollout
from hf_patchdist.verifiers import GRPO_GATE, get_verifier

from .test_rewriter_trainer import tiny_args


def sharp_trainer(tiny_model_dir, tmp_path, **overrides):
    """A trainer on the tiny model re-drawn so that greedy outputs depend on every prompt token."""
    model, tokenizer = load_model_and_tokenizer(tiny_model_dir, dtype="float32", device="cpu")
    sharpen_weights(model)
    return RewriterTrainer(model=model, processing_class=tokenizer, args=tiny_args(tmp_path, **overrides), train_dataset=make_dataset("plain"))


def greedy_tokens(model, prompt_ids, max_new_tokens, eos):
    """``model.generate`` greedy on one prompt alone: its new tokens up to the end-of-sequence token."""
    import torch

    output = model.generate(
        input_ids=torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
        top_p=None, top_k=None, pad_token_id=eos,
    )
    tokens = output[0, len(prompt_ids) :].tolist()
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


def test_completions_are_the_greedy_ones_of_their_own_prompt_and_each_prompt_is_prefilled_once(tiny_model_dir, tmp_path, monkeypatch):
    # top_k = 1 samples the arg-max: every completion must be model.generate's greedy output of its prompt.
    trainer = sharp_trainer(
        tiny_model_dir, tmp_path, top_k=1, max_completion_length=10, rollout_engine="decode_loop", rollout_stop_at_final_answer=False
    )
    assert isinstance(trainer.rollout_func, DecodeLoopRollout) and trainer.rollout_func.stop is None
    rows = [trainer.train_dataset[i]["prompt"] for i in range(3)]
    prompts = [rows[0]] * 3 + [rows[1]] * 3 + [rows[2]] * 2  # groups of 3, 3 and 2: two backend calls
    base = trainer.model.get_base_model()
    shapes = []
    forward = base.forward

    def recording_forward(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    monkeypatch.setattr(base, "forward", recording_forward)
    output = trainer.rollout_func(prompts, trainer)
    monkeypatch.undo()

    assert output["logprobs"] is None
    assert output["prompt_ids"] == trainer._tokenize_prompts(prompts)[0], "the ids TRL itself would tokenize"
    eos = trainer.processing_class.eos_token_id
    expected = [greedy_tokens(trainer.model, ids, 10, eos) for ids in output["prompt_ids"]]
    assert output["completion_ids"] == expected
    assert len({tuple(ids) for ids in expected}) == 3, "the three prompts must have different greedy outputs"
    # One prefill row per distinct prompt (not per completion); the candidates share its keys and values.
    assert sum(batch for batch, length in shapes if length > 1) == 3
    assert [len(stats.token_ids) for stats in trainer.rollout_func.last_stats] == [2, 1]
    assert all(stats.shared_prefix for stats in trainer.rollout_func.last_stats)
    assert [batch for batch, length in shapes if length == 1][0] == 6, "the first decode step runs 2 prompts x 3 rows"


def test_a_grpo_step_runs_with_the_decode_loop(tiny_model_dir, tmp_path):
    args = tiny_args(
        tmp_path, max_steps=1, per_device_train_batch_size=8, temperature=0.7, top_p=0.9, top_k=20, rollout_engine="decode_loop"
    )
    trainer = RewriterTrainer(model=tiny_model_dir, args=args, train_dataset=make_dataset("plain", GSM8K_ROWS[:2]))
    rollout = trainer.rollout_func
    assert isinstance(rollout, DecodeLoopRollout)
    gate = get_verifier(GRPO_GATE)
    assert rollout.stop.__func__ is type(gate).final_answer_end and rollout.stop.__self__.to_dict() == gate.to_dict()
    settings = rollout.settings(trainer, 2)
    assert (settings.do_sample, settings.temperature, settings.top_p, settings.top_k) == (True, 0.7, 0.9, 20)
    assert (settings.max_new_tokens, settings.length_multiple, settings.batch_size) == (12, None, 2)

    seen = []

    def recording(prompts, trainer):
        seen.append([prompt[-1]["content"] for prompt in prompts])
        return rollout(prompts, trainer)

    trainer.rollout_func = recording
    trainer.train()
    # TRL hands the rollout each prompt K = 4 times in a row; the decode loop prefilled each once.
    assert len(seen) == 1 and len(seen[0]) == 8
    assert seen[0][:4] == [seen[0][0]] * 4 and seen[0][4:] == [seen[0][4]] * 4 and seen[0][0] != seen[0][4]
    (stats,) = rollout.last_stats
    assert len(stats.token_ids) == 2 and stats.decode_batch_sizes[0] == 8
    log = next(entry for entry in trainer.state.log_history if "completions/mean_length" in entry)
    assert 0 < log["completions/mean_length"] <= 12


def test_engine_defaults_and_refusals(tmp_path):
    # The default stays TRL's generation until a clean measurement shows the decode loop faster.
    assert RewriterGRPOConfig(str(tmp_path), use_cpu=True).rollout_engine == "trl"
    assert RewriterGRPOConfig(str(tmp_path), use_cpu=True, rollout_engine="decode_loop").rollout_engine == "decode_loop"
    # Options the decode loop does not apply are refused.
    for options in ({"repetition_penalty": 1.1}, {"min_p": 0.05}, {"generation_kwargs": {"typical_p": 0.9}}):
        assert RewriterGRPOConfig(str(tmp_path), use_cpu=True, **options).rollout_engine == "trl"
        with pytest.raises(ValueError, match="does not apply"):
            RewriterGRPOConfig(str(tmp_path), use_cpu=True, rollout_engine="decode_loop", **options)
    with pytest.raises(ValueError, match="rollout_stop_at_final_answer"):
        RewriterGRPOConfig(str(tmp_path), use_cpu=True, rollout_engine="decode_loop", mask_truncated_completions=True)
    assert RewriterGRPOConfig(
        str(tmp_path), use_cpu=True, rollout_engine="decode_loop", mask_truncated_completions=True, rollout_stop_at_final_answer=False
    ).rollout_engine == "decode_loop"
    with pytest.raises(ValueError, match="rollout_engine must be one of"):
        RewriterGRPOConfig(str(tmp_path), use_cpu=True, rollout_engine="vllm")


def test_trl_engine_and_a_user_rollout_func_leave_generation_to_trl(tiny_model_dir, tmp_path):
    trainer = RewriterTrainer(model=tiny_model_dir, args=tiny_args(tmp_path, rollout_engine="trl"), train_dataset=make_dataset("plain"))
    assert trainer.rollout_func is None

    def mine(prompts, trainer):
        raise AssertionError("not called here")

    with pytest.warns(UserWarning, match="experimental"):
        trainer = RewriterTrainer(
            model=tiny_model_dir, args=tiny_args(tmp_path, rollout_engine="decode_loop"), train_dataset=make_dataset("plain"), rollout_func=mine
        )
    assert trainer.rollout_func is mine
