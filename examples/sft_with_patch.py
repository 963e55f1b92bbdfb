"""SFT on patched targets: an ordinary TRL SFT script where only the trainer class and `rewriter=` change.

    python examples/sft_with_patch.py                                  # 32 GSM8K rows, the embedded SmolLM2-135M
    python examples/sft_with_patch.py --rewriter org/my-rewriter       # an RL-trained rewriter (folder or Hub id)
    python examples/sft_with_patch.py --data openai/gsm8k --max-steps 20

Without --rewriter, the targets are rewritten by the model being trained itself (the prompted-rewrite baseline).
The patched training set is cached: running the script again skips the rewriting.
"""

import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from datasets import load_dataset
from trl import SFTConfig

from hf_patchdist import DistributionPatchTrainer  # was: from trl import SFTTrainer


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", default="smollm2-135m-instruct", help="Model to fine-tune (alias, folder or Hub id)")
parser.add_argument("--rewriter", default=None, help="Trained rewriter (folder or Hub id); default: prompted rewriting")
parser.add_argument("--data", default="/work/shared/data/gsm8k/train.jsonl", help="GSM8K JSONL file, or the Hub id openai/gsm8k")
parser.add_argument("--rows", default="0:32", help="Row slice to train on (default 0:32)")
parser.add_argument("--max-steps", type=int, default=4)
parser.add_argument("--output", default="outputs/sft-with-patch")
args = parser.parse_args()

if Path(args.data).is_file():
    dataset = load_dataset("json", data_files=args.data, split=f"train[{args.rows}]")
else:
    dataset = load_dataset(args.data, "main", split=f"train[{args.rows}]")

trainer = DistributionPatchTrainer(  # was: SFTTrainer(
    model=args.model,
    args=SFTConfig(output_dir=args.output, max_steps=args.max_steps, per_device_train_batch_size=4, logging_steps=1,
                   bf16=False, report_to="none"),
    train_dataset=dataset,  # plain question/answer columns: patched, then trained as prompt/completion
    rewriter=args.rewriter,  # the only new argument
)
print(trainer.patch_statistics.summary())
trainer.train()
trainer.save_model()
trainer.create_model_card(model_name=Path(args.output).name)  # tagged hf-patchdist, with the patch statistics
