"""What the rewriting prompt shows of the expert answer: all of it, or only its equations (issue 14's copy goal).

At best-of-8, most accepted rewrites keep half or more of the expert answer's words in order (87% for the trained
rewriter under gate 9, ``benchmarks/results/rewriter_vs_prompted.json``); the goal is at most 10%. The simplest way to
stop a rewriter from copying the expert's sentences is not to show them: this benchmark shows the rewriter only the
expert answer's equations (as the gate reads them, one per line, then the final-answer line) under a prompt that
calls them "calculations of a correct solution", and compares it with the default prompt on the same rows, same
seed, same gate (the gate and the fallback still see the whole expert answer, and each row's token limit still
follows the whole answer's length). An expert answer without a readable equation is shown whole.

Both rewriters, best-of-8 at the library's sampling settings: the prompted one (no adapter) and the committed one
(trained on the default prompt, so the equations view is new to it). Statistics per cell as in ``best_of_k.py``
(its ``cell``), with the paper's selection rule and with ``require_lower_nll``.

Goal (issue 14's copy goal without losing coverage): with the equations view, at most 10% of the accepted rewrites
keep half the expert answer (``reference_similarity >= 0.5``) while acceptance does not fall below the default
view's, for the prompted rewriter at ``require_lower_nll``. The default view is the control (its rewrites copy).

Prints one JSON object on its last line and writes it to ``benchmarks/results/reference_view.json``, with accepted
rewrites of each cell for reading in ``reference_view_examples.json`` and every judged candidate in
``reference_view/<rewriter>_<view>.json.gz``. ``acceptance_without_half_copies``: best-of-8 acceptance if a candidate keeping
half the expert's words failed the gate (the coverage left for rewrites in the model's own words);
``equation_list_share``: accepted rewrites whose lines are mostly bare equations ("16 / 2 = 8"), the shown calculations
copied back (reading the first run showed that is what the equations view mostly gets).

    flock /tmp/hf-patchdist-bench.lock python benchmarks/reference_view.py      # about 12 min on 2 cores
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

from datasets import load_dataset
from transformers import set_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))  # best_of_k
from best_of_k import HALF_COPY, cell, similarity_histogram  # noqa: E402

from hf_patchdist.formats import QAExample, detect_dataset_format, read_example  # noqa: E402
from hf_patchdist.rewriter import Rewriter  # noqa: E402
from hf_patchdist.rewriter.candidates import select_target  # noqa: E402
from hf_patchdist.rewriter.config import final_answer_line  # noqa: E402
from hf_patchdist.verifiers.math.equations import _equations_in_line  # noqa: E402
from hf_patchdist.verifiers.text_checks import reference_similarity, strip_calculator_annotations  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
K = 8
GOAL_HALF_COPY = 0.1

EQUATIONS_TEMPLATE = (
    "Question:\n{question}\n\n"
    "Calculations of a correct solution:\n{answer}\n\n"
    "Solve the question step by step in your own words, using these calculations as a guide. "
    "Write every calculation as an equation. "
    "End with the final answer on its own line, exactly in this form: {final_line}"
)


def equations_view(answer: str) -> str | None:
    """The expert answer's equations as the gate reads them, one per line, and its final-answer line (None: none read)."""
    equations = [
        f"{equation.lhs_source} = {equation.rhs_options[0][1]}"
        for line in strip_calculator_annotations(answer).splitlines()
        if "=" in line
        for equation in _equations_in_line(line)
    ]
    return "\n".join([*equations, final_answer_line(answer)]) if equations else None


BARE_EQUATION_RE = re.compile(r"^(?:step \d+:\s*)?[\d\s.,+\-*/x×÷()$%=]+$", re.IGNORECASE)


def is_equation_list(text: str) -> bool:
    """Whether half or more of a rewrite's lines before the final answer are bare equations ("16 / 2 = 8"): the shown
    calculations copied back, with no words of the model's own around them."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip() and not line.strip().startswith("####")]
    return bool(lines) and sum(bool(BARE_EQUATION_RE.match(line)) for line in lines) >= len(lines) / 2


class EquationsViewRewriter(Rewriter):
    """A Rewriter whose prompt shows only the expert answer's equations; gate, fallback and limits see it all."""

    def build_prompt(self, example: QAExample) -> str:
        view = equations_view(example.answer or "")
        if view is None:
            return super().build_prompt(example)
        return super().build_prompt(replace(example, answer=view))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/gsm8k/train.jsonl"))
    parser.add_argument("--split", default="train[800:880]")
    parser.add_argument("--rewriter", default=str(ROOT / "examples/rewriters/gsm8k-smollm2-135m"))
    parser.add_argument("--rows-per-batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/reference_view.json"))
    args = parser.parse_args()

    dataset = load_dataset("json", data_files=args.data, split=args.split)
    spec = detect_dataset_format(dataset)
    examples = [read_example(row, spec) for row in dataset]
    rl = Rewriter.from_pretrained(args.rewriter, show_progress=False)
    stripped = rl.scorer.score([rl.qa_prompt(e) for e in examples], [strip_calculator_annotations(e.answer) for e in examples]).nll
    result: dict = {
        "benchmark": "reference_view",
        "split": args.split,
        "rows": len(examples),
        "k": K,
        "sampling": rl.config.sampling,
        "verifier": rl.verifier.to_dict(),
        "rows_without_equations": sum(equations_view(e.answer or "") is None for e in examples),
        "stripped_expert_nll": sum(stripped) / len(stripped),
        "load_average_start": os.getloadavg()[0],
        "cells": {},
    }
    readable: dict[str, list[dict]] = {}
    output = Path(args.output)
    for name in ("prompted", "rl"):
        for view in ("full", "equations"):
            cls = EquationsViewRewriter if view == "equations" else Rewriter
            if name == "rl":
                rewriter = cls.from_pretrained(args.rewriter, show_progress=False)
            else:
                rewriter = cls(rl.config.base_model, config=replace(rl.config, has_adapter=False), show_progress=False)
            rewriter.config.num_candidates = K
            if view == "equations":
                rewriter.config.prompt_template = EQUATIONS_TEMPLATE
            set_seed(args.seed)
            start = time.perf_counter()
            rows = []
            for first in range(0, len(examples), args.rows_per_batch):
                rows += rewriter.judge_examples(examples[first : first + args.rows_per_batch])
                print(f"[reference_view] {name}/{view}: {len(rows)}/{len(examples)} rows, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
            seconds = time.perf_counter() - start
            key = f"{name}_{view}"
            stats = {rule: cell(rows, K, rule == "require_lower_nll") for rule in ("paper", "require_lower_nll")}
            for rule in stats.values():
                similarity = rule.pop("similarity")
                rule["mean_similarity"] = sum(similarity) / len(similarity) if similarity else None
                rule["similarity_histogram"] = similarity_histogram(similarity)
                rule["target_nll_over_stripped"] = rule["target_nll"] / result["stripped_expert_nll"]
            # What best-of-8 would keep if a candidate keeping half the expert's words failed the gate: the coverage
            # left for rewrites in the model's own words.
            own_words = [
                replace(row, candidates=[
                    c if not c.passed or reference_similarity(c.kept_text, row.reference) < HALF_COPY
                    else replace(c, passed=False, reason="half_copy", nll=math.nan)
                    for c in row.candidates
                ])
                for row in rows
            ]
            stats["require_lower_nll"]["acceptance_without_half_copies"] = cell(own_words, K, True)["acceptance"]
            chosen = [select_target(row, k=K, require_lower_nll=True) for row in rows]
            kept = [c.text for c in chosen if c.source == "rewrite"]
            stats["require_lower_nll"]["equation_list_share"] = sum(map(is_equation_list, kept)) / len(kept) if kept else None
            rejected = Counter(c.reason for row in rows for c in row.candidates if not c.passed)
            work = output.with_name(output.stem)
            work.mkdir(parents=True, exist_ok=True)
            (work / f"{key}.json.gz").write_bytes(gzip.compress(json.dumps([asdict(row) for row in rows]).encode()))
            result["cells"][key] = {**stats, "seconds": round(seconds, 1), "rejected_candidates": dict(rejected.most_common())}
            readable[key] = [
                {
                    "question": example.question, "expert": example.answer, "rewrite": target.text,
                    "nll_expert": row.original_nll, "nll_rewrite": target.nll,
                    "similarity_to_expert": reference_similarity(target.text, example.answer),
                }
                for example, row, target in zip(examples, rows, chosen)
                if target.source == "rewrite"
            ][:15]

    full, equations = (result["cells"][f"prompted_{view}"]["require_lower_nll"] for view in ("full", "equations"))
    result.update(
        goal=f"prompted, equations view, require_lower_nll: half-copy share <= {GOAL_HALF_COPY} and acceptance >= the full view's",
        half_copy_threshold=HALF_COPY,
        meets_goal=bool(equations["half_copy_share"] <= GOAL_HALF_COPY and equations["acceptance"] >= full["acceptance"]),
        control_meets_goal=bool(full["half_copy_share"] <= GOAL_HALF_COPY),
        load_average_end=os.getloadavg()[0],
    )
    output.with_name(output.stem + "_examples.json").write_text(json.dumps(readable, indent=2) + "\n")
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
