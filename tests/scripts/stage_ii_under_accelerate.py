"""Stage II (DistributionPatchTrainer) on one or more processes, greedy float32 rewriting with the tiny model.

Usage (from the test): [accelerate launch --num_processes 2 ...] stage_ii_under_accelerate.py MODEL_DIR OUT_DIR

Each process writes ``OUT_DIR/rank-<k>.json``: the prompts its backend generated for with their greedy texts, the
patched training set, what the trainer trains on, the cache key, and the number of generate calls of a second
construction (which must read the cache).
"""

import json
import sys
from pathlib import Path

import torch
from datasets import Dataset
from trl import SFTConfig

from hf_patchdist.generation import TransformersBackend
from hf_patchdist.models import load_model_and_tokenizer
from hf_patchdist.rewriter import Rewriter
from hf_patchdist.trainers import DistributionPatchTrainer

model_dir, out_dir = sys.argv[1], Path(sys.argv[2])
# 7 rows of different lengths, batches of 2: 4 map batches, the last one short; 2 processes take 2 + 2 batches.
rows = [
    {"question": f"What is {i} + {i * 7}?" + " Think step by step." * (i % 3), "answer": f"{i} + {i * 7} = {8 * i}\n#### {8 * i}"}
    for i in range(1, 8)
]


class RecordingBackend(TransformersBackend):
    generated: list = []

    def generate(self, prompts, **kwargs):
        results = super().generate(prompts, **kwargs)
        RecordingBackend.generated.append([{"prompt": p, "texts": [c.text for c in r]} for p, r in zip(prompts, results)])
        return results


model, tokenizer = load_model_and_tokenizer(model_dir, dtype="float32", device="cpu")
# Re-drawn at a larger scale (as the backend tests' `sharp_model`), so that greedy texts depend on every prompt token
# and on the padding of its batch: the tiny model as saved repeats one token whatever the prompt.
generator = torch.Generator().manual_seed(0)
with torch.no_grad():
    for name, parameter in model.named_parameters():
        if parameter.ndim == 2:
            scale = 1.0 if ("q_proj" in name or "k_proj" in name) else 2.0
            std = 1.0 if "embed" in name else scale / parameter.shape[1] ** 0.5
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
args = SFTConfig(
    output_dir=str(out_dir / "sft"), max_steps=1, per_device_train_batch_size=2, learning_rate=1e-3, save_strategy="no",
    report_to="none", bf16=False, use_cpu=True, gradient_checkpointing=False, max_length=128, disable_tqdm=True, seed=0,
)
args.patch_cache_dir = str(out_dir / "patch_cache")


def build(backend):
    rewriter = Rewriter(model, tokenizer, backend=backend, batch_size=2, show_progress=False,
                        question_column="question", answer_column="answer")
    rewriter.config.generation = {**rewriter.config.generation, "max_new_tokens": 12}
    rewriter.config.keep_rejected = True  # a fifth column the processes must gather too
    return DistributionPatchTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, rewriter=rewriter)


trainer = build(RecordingBackend(model, tokenizer))
first_calls = list(RecordingBackend.generated)
again = build(RecordingBackend(model, tokenizer))  # before training: the weights, so the key, are unchanged
second_calls = len(RecordingBackend.generated) - len(first_calls)
trainer.train()  # the processes must also get through a training step together after patching
rank = trainer.accelerator.process_index
record = {
    "generated": first_calls,
    "second_construction_calls": second_calls,
    "second_from_cache": again.patch_result.from_cache,
    "patched": trainer.patched_dataset.to_list(),
    "trained_on": trainer.train_dataset.select_columns(["input_ids"]).to_list(),
    "key": trainer.patch_result.key,
    "processes": trainer.accelerator.num_processes,
}
(out_dir / f"rank-{rank}.json").write_text(json.dumps(record, default=str))
