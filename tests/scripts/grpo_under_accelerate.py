"""Run a couple of RewriterTrainer steps; every reward call records whether it saw whole groups.

Usage (from the test): accelerate launch --num_processes 2 --cpu grpo_under_accelerate.py MODEL_DIR OUT_DIR PER_DEVICE K
"""

import json
import sys
from collections import Counter
from pathlib import Path

from datasets import Dataset

from hf_patchdist.rewards import PatchReward
from hf_patchdist.trainers.rewriter_grpo_config import RewriterGRPOConfig
from hf_patchdist.trainers.rewriter_trainer import RewriterTrainer

model_dir, out_dir, per_device, k = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(1, 9)]


class RecordingReward(PatchReward):
    calls: list = []

    def __call__(self, prompts, completions, **kwargs):
        sizes = Counter(kwargs["patch_row_id"])
        RecordingReward.calls.append({"row_ids": list(kwargs["patch_row_id"]), "whole_groups": all(n == k for n in sizes.values())})
        return super().__call__(prompts, completions, **kwargs)


args = RewriterGRPOConfig(
    str(out_dir), max_steps=2, per_device_train_batch_size=per_device, num_generations=k, max_completion_length=8,
    lora_r=4, lora_alpha=8, report_to="none", bf16=False, use_cpu=True, save_strategy="no", gradient_checkpointing=False,
    seed=0,
)
trainer = RewriterTrainer(model=model_dir, args=args, train_dataset=Dataset.from_list(rows), reward_funcs=[RecordingReward()])
trainer.train()
rank = trainer.accelerator.process_index
(out_dir / f"calls-{rank}.json").write_text(json.dumps(RecordingReward.calls))
