"""Throughput of the batched Rewriter against a plain one-example-at-a-time ``model.generate`` loop.

Same 32 GSM8K rows (``train[800:832]``), same model and dtype, same rewriting prompt, same maximum
new tokens and the same final-answer stopping in all three measurements, run side by side:

1. the Rewriter through ``Dataset.map(batched=True)`` (its time includes verification and pi_0 scoring);
2. a loop calling ``model.generate`` on one prompt at a time (generation only);
3. raw batched ``generate`` on the same prompts (generation only), to show what verification and
   scoring cost on top of generation.

Prints one JSON object on its last line and writes it to ``benchmarks/results/rewrite_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from datasets import load_dataset
from transformers import StoppingCriteriaList

from hf_patchdist.formats import detect_dataset_format, read_example
from hf_patchdist.generation import FinalAnswerStoppingCriteria, GenerationSettings, TransformersBackend
from hf_patchdist.rewriter import Rewriter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/gsm8k/train.jsonl"))
    parser.add_argument("--split", default="train[800:832]")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "rewrite_throughput.json"))
    args = parser.parse_args()

    dataset = load_dataset("json", data_files=args.data, split=args.split)
    rewriter = Rewriter(args.model, batch_size=args.batch_size, show_progress=False)
    rewriter.config.generation = {**rewriter.config.generation, "max_new_tokens": args.max_new_tokens}
    model, tokenizer = rewriter.model, rewriter.tokenizer
    spec = detect_dataset_format(dataset)
    prompts = [rewriter.build_prompt(read_example(row, spec)) for row in dataset]
    stop = rewriter.verifier.final_answer_end
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    n = len(dataset)

    # Warm-up (first-call allocations), not timed.
    TransformersBackend(model, tokenizer).generate(prompts[:2], num_candidates=1, settings=GenerationSettings(max_new_tokens=8), stop=stop)

    start = time.perf_counter()
    patched = dataset.map(rewriter, batched=True, batch_size=args.batch_size, load_from_cache_file=False)
    rewriter_seconds = time.perf_counter() - start

    start = time.perf_counter()
    TransformersBackend(model, tokenizer).generate(prompts, num_candidates=1, settings=settings, stop=stop)
    batched_generate_seconds = time.perf_counter() - start

    start = time.perf_counter()
    with torch.no_grad():
        for prompt in prompts:
            encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
            criteria = StoppingCriteriaList([FinalAnswerStoppingCriteria(tokenizer, encoded["input_ids"].shape[1], stop)])
            model.generate(
                **encoded, max_new_tokens=args.max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                pad_token_id=tokenizer.pad_token_id, stopping_criteria=criteria,
            )
    loop_seconds = time.perf_counter() - start

    result = {
        "rows": n,
        "model": args.model,
        "dtype": str(model.dtype).removeprefix("torch."),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "rewriter_examples_per_s": n / rewriter_seconds,
        "one_at_a_time_generate_examples_per_s": n / loop_seconds,
        "batched_generate_examples_per_s": n / batched_generate_seconds,
        "speedup_vs_one_at_a_time": loop_seconds / rewriter_seconds,
        "rewriter_over_raw_batched_generate": batched_generate_seconds / rewriter_seconds,
        "seconds": {"rewriter": rewriter_seconds, "one_at_a_time": loop_seconds, "batched_generate": batched_generate_seconds},
        "acceptance_rate": sum(s == "rewrite" for s in patched["patch_source"]) / n,
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
