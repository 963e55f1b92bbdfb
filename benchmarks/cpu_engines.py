"""CPU generation engines side by side on the rewriting workload: which one should generate on CPU?

One run, same 32 GSM8K rows (``train[800:832]``), same rewriting prompts (``Rewriter.build_prompt``),
same token ids (the transformers chat template, tokenised once and fed to every engine), same
per-prompt token limits (``Rewriter.token_limits``), and every candidate stopped at the end of its
final-answer line (``#### <number>``, the verifier's ``final_answer_end``) or at an end-of-sequence
token. Engines:

- ``transformers_bf16``: our :class:`~hf_patchdist.generation.TransformersBackend` (decode loop,
  finished rows leave the batch, shared prefill for candidates) in the Rewriter's default dtype
  (bfloat16 where the CPU has it): the baseline and the control.
- ``transformers_fp32``: the same backend in float32: the reference of the greedy agreement.
- ``ctranslate2_fp32`` / ``ctranslate2_int8``: CTranslate2 ``Generator.generate_batch`` on a model
  converted with ``ct2-transformers-converter`` (float32, and int8 weights with float32 compute).
- ``openvino_genai``: OpenVINO GenAI ``ContinuousBatchingPipeline`` (prefix caching on) on the model
  exported with ``optimum-cli export openvino`` (fp32 weights; OpenVINO picks its CPU inference
  precision, bf16 on a CPU that has it).
- ``openvino_backend``: our :class:`~hf_patchdist.generation.openvino_backend.OpenVINOBackend` (the same
  GenAI pipeline on a model converted in this environment through GenAI's GGUF reader: F16 linear weights,
  float32 inference, no optimum-intel; converted once into the hf_patchdist cache before the clock).
- ``llama_cpp_q4_1``: llama.cpp through the low-level API of ``llama-cpp-python`` on the GGUF the
  project ships (Q4_1), all rows of a batch as parallel sequences of one context
  (``n_seq_max``, unified KV cache); the K candidates of a prompt copy its prefilled sequence
  (``llama_memory_seq_cp``).

An engine whose package or converted model is missing is reported as skipped with the reason. The
converted models are looked up under ``--models-dir`` (see ``--help`` for the conversion commands).

Measured per engine: seconds and useful tokens/s for greedy best-of-1 (useful tokens: each
candidate's new tokens up to the one that finished it), the speed-up over ``transformers_bf16``;
best-of-8 time over best-of-1 time (both sampled, temperature 1, on the first ``--best-of-rows`` rows); greedy exact text match with
``transformers_fp32``. Goal: an engine at >= 1.5x the tokens/s of ``transformers_bf16`` (then worth a
backend); ``transformers_bf16`` is the control that cannot meet it (1.0x by definition). Prints the
texts, one JSON object on its last line, and writes it to ``benchmarks/results/cpu_engines.json``
(texts in ``cpu_engines_texts.json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import load_dataset

from hf_patchdist.formats import detect_dataset_format, read_example
from hf_patchdist.generation import GenerationSettings, TransformersBackend
from hf_patchdist.generation.decode_loop import token_has_newline
from hf_patchdist.models import embedded_gguf_path, load_model_and_tokenizer
from hf_patchdist.rewriter import Rewriter


GOAL_SPEEDUP = 1.5
CONVERSION = {
    "ctranslate2_fp32": "ct2-transformers-converter --model <resolved model> --output_dir <models-dir>/ct2_float32 --quantization float32",
    "ctranslate2_int8": "ct2-transformers-converter --model <resolved model> --output_dir <models-dir>/ct2_int8_float32 --quantization int8_float32",
    "openvino_genai": "optimum-cli export openvino --model <resolved model> --task text-generation-with-past --weight-format fp32 <models-dir>/ov_fp32",
}


@dataclass
class Candidate:
    tokens: list[int]
    ended: bool  # an end-of-sequence token ended it


class Finisher:
    """Cuts a candidate's tokens after the token that finished it: end of sequence, or the final-answer line complete."""

    def __init__(self, tokenizer: Any, eos: set[int], stop: Any) -> None:
        self.tokenizer = tokenizer
        self.eos = eos
        self.stop = stop
        self.memo: dict[int, bool] = {}

    def done(self, tokens: Sequence[int]) -> bool:
        """Whether the last token of ``tokens`` finishes the candidate (checked as tokens arrive)."""
        last = tokens[-1]
        if last in self.eos:
            return True
        if token_has_newline(self.tokenizer, last, self.memo):
            return self.stop(self.tokenizer.decode(list(tokens), skip_special_tokens=True)) is not None
        return False

    def cut(self, tokens: Sequence[int], limit: int) -> Candidate:
        tokens = list(tokens)[:limit]
        for position in range(len(tokens)):
            if tokens[position] in self.eos:
                return Candidate(tokens[: position + 1], True)
            if token_has_newline(self.tokenizer, tokens[position], self.memo) and self.done(tokens[: position + 1]):
                return Candidate(tokens[: position + 1], False)
        return Candidate(tokens, False)


# ---------------------------------------------------------------------------------------------- engines
class TransformersEngine:
    def __init__(self, model: Any, tokenizer: Any, batch_size: int) -> None:
        self.backend = TransformersBackend(model, tokenizer)
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def run(self, prompts, ids, limits, k, sample, finisher, seed):
        settings = GenerationSettings(batch_size=self.batch_size, do_sample=sample, max_new_tokens=max(limits))
        torch.manual_seed(seed)
        self.backend.generate(prompts, num_candidates=k, settings=settings, stop=finisher.stop, max_new_tokens=limits)
        ended = []
        for row in self.backend.last_stats.token_ids:
            ended.append([Candidate(t, bool(t) and t[-1] in finisher.eos) for t in row])
        return ended


class CTranslate2Engine:
    def __init__(self, path: str, tokenizer: Any, compute_type: str, threads: int, batch_size: int) -> None:
        import ctranslate2

        self.generator = ctranslate2.Generator(path, device="cpu", compute_type=compute_type, inter_threads=1, intra_threads=threads)
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def run(self, prompts, ids, limits, k, sample, finisher, seed):
        import ctranslate2

        ctranslate2.set_random_seed(seed)
        out: list[list[Candidate]] = [[] for _ in ids]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            rows = [i for i in chunk for _ in range(k)]  # one batch entry per candidate: each stops on its own
            tokens: list[list[int]] = [[] for _ in rows]

            def callback(step: Any) -> bool:
                row = step.batch_id
                tokens[row].append(step.token_id)
                return finisher.done(tokens[row]) or len(tokens[row]) >= limits[rows[row]]

            options = dict(sampling_topk=0, sampling_temperature=1.0) if sample else dict(sampling_topk=1)
            self.generator.generate_batch(
                [self.tokenizer.convert_ids_to_tokens(ids[i]) for i in rows],
                max_length=max(limits[i] for i in rows),
                include_prompt_in_result=False,
                end_token=sorted(finisher.eos),
                return_end_token=True,
                callback=callback,
                **options,
            )
            for row, index in enumerate(rows):
                out[index].append(finisher.cut(tokens[row], limits[index]))
        return out


class OpenVINOEngine:
    def __init__(self, path: str, threads: int) -> None:
        import openvino_genai

        config = openvino_genai.SchedulerConfig()
        config.enable_prefix_caching = True
        config.cache_size = 2  # GB of KV cache
        config.max_num_batched_tokens = 4096
        config.max_num_seqs = 256
        self.pipe = openvino_genai.ContinuousBatchingPipeline(path, config, "CPU", {"INFERENCE_NUM_THREADS": threads})
        self.openvino_genai = openvino_genai

    def run(self, prompts, ids, limits, k, sample, finisher, seed):
        import openvino as ov
        import numpy as np

        genai = self.openvino_genai
        handles = []
        for request, (row_ids, limit) in enumerate(zip(ids, limits)):
            config = genai.GenerationConfig()
            config.max_new_tokens = limit
            config.num_return_sequences = k
            config.ignore_eos = False
            config.stop_token_ids = set(finisher.eos)
            if sample:
                config.do_sample = True
                config.temperature = 1.0
                config.top_p = 1.0
                config.rng_seed = seed + request
            else:
                config.do_sample = False
            tensor = ov.Tensor(np.array([row_ids], dtype=np.int64))
            handles.append(self.pipe.add_request(request, tensor, config))
        tokens: list[dict[int, list[int]]] = [{} for _ in ids]
        finished: list[dict[int, bool]] = [{} for _ in ids]
        while self.pipe.has_non_finished_requests():
            self.pipe.step()
            for request, handle in enumerate(handles):
                if not handle.can_read():
                    continue
                for sequence, output in handle.read().items():
                    row = tokens[request].setdefault(sequence, [])
                    for token in output.generated_ids:
                        if finished[request].get(sequence):
                            break
                        row.append(token)
                        if finisher.done(row):
                            finished[request][sequence] = True
                if k == 1 and finished[request].get(0):
                    handle.stop()  # one candidate: the request ends with its final-answer line
                elif k > 1 and len(finished[request]) == k and all(finished[request].values()):
                    handle.stop()
        out = []
        for request, limit in enumerate(limits):
            rows = [finisher.cut(tokens[request][s], limit) for s in sorted(tokens[request])]
            out.append(rows)
        return out


class OpenVINOBackendEngine:
    """Our backend, driven through its ``generate`` (it tokenises the prompts as the benchmark does: chat-rendered, no special tokens)."""

    def __init__(self, model: str, tokenizer: Any, threads: int, precision: str) -> None:
        from hf_patchdist.generation.openvino_backend import OpenVINOBackend

        self.backend = OpenVINOBackend(model, tokenizer, inference_precision=precision, threads=threads)

    def run(self, prompts, ids, limits, k, sample, finisher, seed):
        self.backend._random.seed(seed)
        settings = GenerationSettings(max_new_tokens=max(limits), do_sample=sample, temperature=1.0, top_p=1.0)
        self.backend.generate(prompts, num_candidates=k, settings=settings, stop=finisher.stop, max_new_tokens=limits)
        return [[finisher.cut(tokens, limit) for tokens in row] for row, limit in zip(self.backend.last_token_ids, limits)]


def build_engines(name, args, tokenizer, model_bf16, model_fp32):
    models = Path(args.models_dir)
    if name == "transformers_bf16":
        return TransformersEngine(model_bf16, tokenizer, args.batch_size)
    if name == "transformers_fp32":
        return TransformersEngine(model_fp32, tokenizer, args.batch_size)
    if name.startswith("ctranslate2"):
        folder = models / ("ct2_float32" if name.endswith("fp32") else "ct2_int8_float32")
        if not (folder / "model.bin").is_file():
            raise FileNotFoundError(f"no converted model in {folder}: {CONVERSION[name]}")
        return CTranslate2Engine(str(folder), tokenizer, "float32" if name.endswith("fp32") else "int8_float32", args.threads, args.batch_size)
    if name == "openvino_genai":
        folder = models / "ov_fp32"
        if not (folder / "openvino_model.xml").is_file():
            raise FileNotFoundError(f"no exported model in {folder}: {CONVERSION[name]}")
        return OpenVINOEngine(str(folder), args.threads)
    if name == "openvino_backend":
        return OpenVINOBackendEngine(args.model, tokenizer, args.threads, args.openvino_precision)
    if name == "llama_cpp_q4_1":
        from llama_cpp_engine import LlamaCppEngine  # benchmarks/llama_cpp_engine.py

        return LlamaCppEngine(str(embedded_gguf_path()), args.threads, args.batch_size)
    raise ValueError(name)


ENGINE_PACKAGES = {
    "ctranslate2_fp32": "ctranslate2",
    "ctranslate2_int8": "ctranslate2",
    "openvino_genai": "openvino_genai",
    "openvino_backend": "openvino_genai",
    "llama_cpp_q4_1": "llama_cpp",
}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/gsm8k/train.jsonl"))
    parser.add_argument("--split", default="train[800:832]")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--models-dir", default="/work/cpueng_models", help="where the converted models lie")
    parser.add_argument("--engines", default="transformers_bf16,transformers_fp32,ctranslate2_fp32,ctranslate2_int8,openvino_genai,openvino_backend,llama_cpp_q4_1")
    parser.add_argument("--openvino-precision", default="f32", help="inference precision of openvino_backend: f32 or bf16")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--best-of", type=int, default=8)
    parser.add_argument("--no-best-of", dest="run_best_of", action="store_false")
    parser.add_argument("--best-of-rows", type=int, default=8, help="best-of-1/best-of-K timed on the first rows only (time on a shared 2-core host)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--install-times", default=None, help="JSON file with the measured install/convert seconds")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "cpu_engines.json"))
    args = parser.parse_args()

    load_at_start = load_average()
    first_row = int(re.match(r"\w+\[(\d*)", args.split).group(1) or 0) if "[" in args.split else 0
    dataset = load_dataset("json", data_files=args.data, split=args.split)
    rewriter = Rewriter(args.model, show_progress=False)
    tokenizer = rewriter.tokenizer
    model_bf16 = rewriter.model
    model_fp32, _ = load_model_and_tokenizer(args.model, dtype="float32")
    spec = detect_dataset_format(dataset)
    examples = [read_example(row, spec) for row in dataset]
    prompts = [rewriter.build_prompt(example) for example in examples]
    ids = [list(x) for x in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    limits = rewriter.token_limits(examples)
    eos_ids = model_bf16.generation_config.eos_token_id
    eos = set(eos_ids if isinstance(eos_ids, list) else [eos_ids]) | {tokenizer.eos_token_id}
    finisher = Finisher(tokenizer, eos, rewriter.verifier.final_answer_end)
    n = len(prompts)

    results: dict[str, Any] = {}
    texts: dict[str, list[str]] = {}
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        package = ENGINE_PACKAGES.get(name)
        if package is not None:
            import importlib.util

            if importlib.util.find_spec(package) is None:
                results[name] = {"skipped": f"package {package!r} is not installed"}
                print(f"[{name}] skipped: {results[name]['skipped']}", flush=True)
                continue
        try:
            start = time.perf_counter()
            engine = build_engines(name, args, tokenizer, model_bf16, model_fp32)
            load_seconds = time.perf_counter() - start
        except Exception as error:  # noqa: BLE001 - report every engine that cannot start
            results[name] = {"skipped": f"{type(error).__name__}: {error}"}
            print(f"[{name}] skipped: {results[name]['skipped']}", flush=True)
            continue
        entry: dict[str, Any] = {"load_seconds": load_seconds}
        try:
            engine.run(prompts[:2], ids[:2], [4, 4], 1, False, finisher, args.seed)  # warm-up, not timed
            start = time.perf_counter()
            greedy = engine.run(prompts, ids, limits, 1, False, finisher, args.seed)
            entry["greedy_seconds"] = time.perf_counter() - start
            entry["greedy_useful_tokens"] = sum(len(c[0].tokens) for c in greedy)
            entry["greedy_useful_tokens_per_s"] = entry["greedy_useful_tokens"] / entry["greedy_seconds"]
            entry["greedy_rows_with_final_line"] = sum(
                finisher.stop(tokenizer.decode(c[0].tokens, skip_special_tokens=True)) is not None for c in greedy
            )
            entry["load_average_after_greedy"] = load_average()
            texts[name] = [tokenizer.decode(c[0].tokens, skip_special_tokens=True) for c in greedy]
            if args.run_best_of and name != "transformers_fp32":  # fp32 is the agreement reference only
                rows = slice(0, args.best_of_rows)
                entry["best_of_rows"] = len(prompts[rows])
                for k in (1, args.best_of):
                    random.seed(args.seed)
                    start = time.perf_counter()
                    sampled = engine.run(prompts[rows], ids[rows], limits[rows], k, True, finisher, args.seed)
                    entry[f"best_of_{k}_seconds"] = time.perf_counter() - start
                    entry[f"best_of_{k}_useful_tokens"] = sum(len(c.tokens) for row in sampled for c in row)
                    entry[f"best_of_{k}_candidates"] = sum(len(row) for row in sampled)
                    if k > 1:
                        texts[f"{name}_best_of_{k}_row0"] = [tokenizer.decode(c.tokens, skip_special_tokens=True) for c in sampled[0]]
                entry["best_of_8_over_best_of_1"] = entry[f"best_of_{args.best_of}_seconds"] / entry["best_of_1_seconds"]
                entry["load_average_after_best_of"] = load_average()
        except Exception as error:  # noqa: BLE001 - an engine failing mid-run is reported, the others still run
            entry["failed"] = f"{type(error).__name__}: {error}"
            texts.pop(name, None)
        results[name] = entry
        print(f"[{name}] {json.dumps(entry)}", flush=True)
        # What is measured so far survives a run cut short (the host is shared).
        Path(args.output).with_suffix(".partial.json").write_text(json.dumps({"engines": results, "texts": texts}, indent=1) + "\n")
        del engine
        gc.collect()

    base = results.get("transformers_bf16", {})
    reference = texts.get("transformers_fp32")
    for name, entry in results.items():
        if "skipped" in entry or "failed" in entry:
            continue
        if "greedy_useful_tokens_per_s" in base:
            entry["speedup_tokens_per_s_vs_transformers_bf16"] = entry["greedy_useful_tokens_per_s"] / base["greedy_useful_tokens_per_s"]
            entry["speedup_seconds_vs_transformers_bf16"] = base["greedy_seconds"] / entry["greedy_seconds"]
        if reference is not None:
            same = sum(a == b for a, b in zip(texts[name], reference))
            entry["greedy_text_exact_match_vs_transformers_fp32"] = same / n
        if "transformers_bf16" in texts:
            entry["greedy_text_exact_match_vs_transformers_bf16"] = sum(a == b for a, b in zip(texts[name], texts["transformers_bf16"])) / n

    print("\n=== greedy outputs, each engine (rows where an engine differs from transformers_fp32 are marked) ===")
    for i in range(n):
        print(f"\n--- row {first_row + i} (limit {limits[i]})")
        for name in texts:
            if name.endswith("_row0"):
                continue
            mark = "" if reference is None or texts[name][i] == reference[i] else "  [differs from fp32]"
            print(f"[{name}]{mark} {texts[name][i].strip()!r}")

    measured = {k: v for k, v in results.items() if "speedup_tokens_per_s_vs_transformers_bf16" in v}
    fastest = max(measured, key=lambda k: measured[k]["greedy_useful_tokens_per_s"]) if measured else None
    winners = [k for k, v in measured.items() if k != "transformers_bf16" and v["speedup_tokens_per_s_vs_transformers_bf16"] >= GOAL_SPEEDUP]
    install_times = json.loads(Path(args.install_times).read_text()) if args.install_times else None
    result = {
        "rows": n,
        "split": args.split,
        "model": args.model,
        "prompt_tokens": sum(len(x) for x in ids),
        "token_limits": limits,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "load_average_start": load_at_start,
        "load_average_end": load_average(),
        "engines": results,
        "fastest_greedy": fastest,
        "goal": f"an engine at >= {GOAL_SPEEDUP}x the useful tokens/s of transformers_bf16 (greedy, same prompts and limits)",
        "engines_meeting_goal": winners,
        "meets_goal": bool(winners),
        "control": {
            "what": "transformers_bf16 against itself (1.0x): cannot meet the goal",
            "meets_goal": False,
        },
        "install_and_conversion_seconds": install_times,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    Path(args.output).with_name(Path(args.output).stem + "_texts.json").write_text(
        json.dumps({"rows": list(range(first_row, first_row + n)), **texts}, indent=1) + "\n"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
