"""The example scripts' recipes, on a tiny model (the real runs are benchmarks)."""

from __future__ import annotations

import importlib.util
import json
from argparse import Namespace
from pathlib import Path

import torch
from conftest import GSM8K_ROWS, good_rewrite_for, make_dataset

from hf_patchdist.generation import StaticBackend
from hf_patchdist.rewriter import Rewriter
from hf_patchdist.trainers.rewriter_grpo_config import RewriterGRPOConfig
from hf_patchdist.trainers.rewriter_trainer import RewriterTrainer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rft_warm_start_fine_tunes_the_lora_on_accepted_rewrites_and_grpo_keeps_the_reference_at_pi0(tiny_model_dir, tmp_path):
    example = load_example("train_rewriter_gsm8k")
    config = RewriterGRPOConfig(
        str(tmp_path / "grpo"), max_steps=1, per_device_train_batch_size=4, num_generations=2, max_completion_length=64, beta=0.04,
        report_to="none", bf16=False, use_cpu=True, save_strategy="no", gradient_checkpointing=False, lora_r=4, lora_alpha=8,
    )
    args = Namespace(
        model=tiny_model_dir, rft_candidates=2, rft_epochs=2, rft_learning_rate=1e-2, lora_r=4, lora_alpha=8, seed=0,
        # The fixture rewrites keep 52-58% of the expert's words, and a random model's NLL does not rank them.
        rft_max_reference_copy=0.7, rft_max_question_copy=0.2, rft_require_lower_nll=False,
    )

    def responder(prompt):  # the last row's candidates fail the gate: it is not in the RFT data
        return "I do not know.\n#### 1" if GSM8K_ROWS[3]["question"] in prompt else good_rewrite_for(prompt)

    folder = tmp_path / "rft"
    model, tokenizer = example.warm_start_by_rft(config, args, make_dataset("plain"), folder, backend=StaticBackend(responder))

    stats = json.loads((folder / "rft_stats.json").read_text())
    assert (stats["rows"], stats["rewritten_rows"], stats["sft"]["examples"]) == (4, 3, 3)
    assert stats["gate"]["max_reference_copy"] == 0.7 and stats["require_lower_nll"] is False
    assert stats["rejected_candidates_by_reason"] and stats["generation"]["temperature"] == 0.6 and stats["generation"]["top_p"] == 0.95
    data = [json.loads(line) for line in (folder / "rft_data.jsonl").read_text().splitlines()]
    assert [row["question"] for row in data] == [row["question"] for row in GSM8K_ROWS[:3]]
    assert all(row["rewrite"] == good_rewrite_for(row["question"]) for row in data)
    assert len((folder / "rft_candidates.jsonl").read_text().splitlines()) == 4
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.detach().abs().max()) > 0 for p in lora_b), "SFT must move the LoRA (B starts at zero)"
    assert all(p.requires_grad for p in lora_b)

    warm = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    trainer = RewriterTrainer(model=model, args=config, train_dataset=make_dataset("plain", GSM8K_ROWS[:2]), processing_class=tokenizer)
    policy = trainer.accelerator.unwrap_model(trainer.model)
    assert list(policy.peft_config) == ["default"] and trainer.ref_model is None, "the KL reference is pi_0, not the warm start"
    trained = {n: p for n, p in policy.named_parameters() if "lora_" in n}
    assert set(trained) == set(warm) and all(torch.equal(trained[n].detach(), warm[n]) for n in warm), "GRPO starts from the warm start"

    # --rft-only: the warm start is the rewriter, loadable as any other, its RFT statistics in the saved summary.
    example.save_rft_rewriter(trainer, tmp_path)
    saved = Rewriter.from_pretrained(tmp_path)
    assert saved.config.training_summary["global_step"] == 0
    assert saved.config.training_summary["rft"]["rewritten_rows"] == 3
    trainer.train()
