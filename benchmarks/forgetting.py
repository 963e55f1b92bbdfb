#!/usr/bin/env python
"""Downstream gain and forgetting of SFT and its peers on GSM8K, against the base model (issue 16).

With the embedded default model and one budget for every method (the same GSM8K training rows, by default
``train[:800]``; the same epochs, learning rate, batch 8 rows per optimizer step, constant learning rate; full
fine-tuning, bf16 where the CPU computes it natively, else float32; gradient checkpointing; conversational
prompt/completion), train and evaluate:

* ``base``: the model itself;
* ``sft``: plain ``trl.SFTTrainer`` on the expert answers;
* ``sft_stripped``: the same on the expert answers without GSM8K's ``<<48/2=24>>`` calculator annotations
  (stripping alone lowers the answers' pi_0 NLL about as much as the first patches did: the honest baseline for
  any patch);
* ``dft``: ``SFTTrainer`` with TRL's Dynamic Fine-Tuning loss (``loss_type="dft"``);
* ``sdft``: on-policy self-distillation, TRL's ``trl.experimental.sdft.SDFTTrainer``: the student samples an answer
  to the question, the teacher (pi_0, or an EMA of the student) sees the question with the expert answer in the
  paper's template, and the loss is a per-token divergence on the student's samples. One sample per row
  (``num_generations=1``, as in the paper's code) and 8 rows per step, so one SDFT step covers the same 8 distinct
  rows as one SFT step and the optimizer budget in examples seen is the same (``forgetting_methods.py`` has the
  mapping and the settings); it samples with plain ``generate``, so the project's generation speed-ups do not
  reach its wall time;
* ``prompted_patch``: ``DistributionPatchTrainer`` with the prompted Rewriter (no adapter) on the same model;
* ``rl_patch``: ``DistributionPatchTrainer`` with the trained rewriter at ``examples/rewriters/gsm8k-smollm2-135m/``;
* ``stripped_patch``: the prompted patch on the annotation-stripped expert answers (what the rewriter sees, what
  a rejected row falls back to and what a copy is judged against are the stripped answers): whether rewriting adds
  anything on top of stripping, since the other patches fall back to the raw answers, annotations included.

Both patches rewrite with best-of-K (``--patch-num-candidates``, default 8) and, by default, keep a rewrite only
when it is closer to pi_0 than the expert answer (``--patch-require-lower-nll``); their stage files record K, that
rule, the gate (its settings and ``GATE_VERSION``) and, for the RL patch, the adapter's sha256.

The budget is chosen first by a small sweep of plain SFT (``--sweep``: learning rates, each trained for its
largest number of epochs with a model saved after every epoch, so one run gives every epoch count; with a
constant learning rate, epoch k of a longer run is the k-epoch budget). The chosen budget is the sweep point
where plain SFT drifts most from the base on general chat prompts (largest ``kl_general``), unless ``--budget
LR:EPOCHS`` says otherwise. ``sft``, ``sdft`` and ``rl_patch`` are trained with every seed of ``--seeds``
(default 0 and 1; the others with the first): the summary keeps every seed's values, their mean (the headline)
and their range (the plot's error bars). Later seeds run after every method's first seed.

Every model is evaluated by :mod:`hf_patchdist.evaluation`: GSM8K test accuracy (greedy, chat template), ARC-Easy
and HellaSwag accuracy by log-likelihood (acc_norm headline, acc raw, gold NLL per character), held-out GSM8K
answer NLL, KL(base || tuned) per token on GSM8K prompts and on general chat prompts (the same pi_0 samples for
every model, stored in ``kl_reference.json``), forgetting per benchmark and its mean; per method also its
training wall time (and rewriting time) and the mean pi_0 NLL of what it trained on (for SDFT: of its on-policy
samples, scored as they are drawn). The goals (``forgetting_summary.py``): the RL patch against plain SFT and
against ``sft_stripped`` (KL general <= 0.5x, forgetting no worse, GSM8K accuracy no worse than the reference's
minus 0.01, held-out NLL gain >= 0.9x, target NLL reference > prompted > RL) and against SDFT (KL general no
higher at an equal or higher gain), each part reported, with ``meets_goal``; the control is plain SFT's second
seed checked against its first.

Resumable: each finished stage writes ``benchmarks/results/forgetting/<name>.json`` at once (commit them; a later
seed's stage is ``<method>_seed<N>``); a rerun, also in a later session on a fresh machine, skips what is done
(when its recorded settings match) and resumes an interrupted training run from its last checkpoint in
``--work-dir``. A stage file with other settings stops the run with a message naming it: the first run's files
(``train[:128]``, 50 GSM8K items, float32) must be moved aside, or the run pointed at another ``--results-dir``,
before a run at these settings. The whole comparison goes to ``benchmarks/results/forgetting.json``
(``{"methods": {...}, "goals": {...}, "meets_goal": ..., "config": {...}, ...}``), tables to
``benchmarks/results/forgetting/report.md`` and a picture to ``benchmarks/results/forgetting/gain_vs_forgetting.png``;
the last line printed is that JSON object.

Wall time (``--estimate`` prints it stage by stage from ``forgetting_summary.DEFAULT_RATES``, where the measured
per-step and per-evaluation times are explained): about 16 h for ``train[:800]`` (SFT 34 s and SDFT 89 s a step,
100 steps an epoch; 700 s an evaluation, 12 of them; best-of-8 rewriting 3 s a row, twice) and about 9 h for
``train[:400]``, on a 2-core CPU with nothing else running; SDFT's two seeds are a third of it. The run prints
what is left, at its own rates, after every stage.

Usage:
    python benchmarks/forgetting.py --estimate             # the plan and its wall time for train[:800] and train[:400]
    python benchmarks/forgetting.py                        # the full run (many hours: see --estimate)
    python benchmarks/forgetting.py --smoke                # a tiny end-to-end check (minutes), results in outputs/
    python benchmarks/forgetting.py --budget 3e-4:1 --methods base,sft,sdft --train-rows 400
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # forgetting_methods, forgetting_summary

from forgetting_methods import SDFT_GENERATOR_NOTE, SDFTOptions  # noqa: E402
from forgetting_summary import DEFAULT_RATES, aggregate_seeds, estimate_run, extra_markdown, goal_checks, seed_spread  # noqa: E402

from hf_patchdist.evaluation import (  # noqa: E402
    DEFAULT_TASKS,
    EvaluationConfig,
    build_kl_reference,
    compare_to_base,
    evaluate_model,
    load_tasks,
    markdown_table,
    plot_gain_vs_forgetting,
    write_json,
)
from hf_patchdist.models import DEFAULT_MODEL  # noqa: E402

METHODS = ("base", "sft", "sft_stripped", "dft", "sdft", "prompted_patch", "rl_patch", "stripped_patch")
GENERAL_TASKS = ("arc_easy", "hellaswag")
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
DEFAULT_RL_REWRITER = REPO / "examples" / "rewriters" / "gsm8k-smollm2-135m"
# What the final comparison keeps of each method (the per-method files keep everything).
SUMMARY_KEYS = (
    "gsm8k", "gsm8k_n", "gsm8k_gain", "heldout_answer_nll", "heldout_nll_gain",
    "arc_easy", "arc_easy_raw", "arc_easy_gold_nll", "arc_easy_n",
    "hellaswag", "hellaswag_raw", "hellaswag_gold_nll", "hellaswag_n",
    "forgetting_arc_easy", "forgetting_hellaswag", "forgetting_mean",
    "kl_from_base", "kl_general", "target_nll", "lr", "epochs", "train_s", "rewrite_s", "wall_s",
)


@dataclass(frozen=True)
class Budget:
    """One SFT budget: learning rate and epochs."""

    lr: float
    epochs: int

    @property
    def tag(self) -> str:
        return f"lr{self.lr:.0e}_ep{self.epochs}"

    @classmethod
    def parse(cls, text: str) -> Budget:
        lr, _, epochs = text.partition(":")
        return cls(float(lr), int(epochs or 1))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL, help="Model every method starts from (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--data-dir", default=os.environ.get("HF_PATCHDIST_DATA_DIR", str(DEFAULT_DATA_DIR)), help="Local JSONL in the layout of ../shared/data")
    p.add_argument("--methods", default=",".join(METHODS), help=f"Comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--sweep", default="1e-4:1,3e-4:1", help="Plain-SFT sweep: LR:MAX_EPOCHS,... (each epoch of a run is a sweep point)")
    p.add_argument("--budget", default=None, help="LR:EPOCHS for the comparison; skips the automatic choice from the sweep")
    p.add_argument("--seeds", default="0,1", help="Training seeds: the first for every method (and the sweep), all of them for --seeded-methods")
    p.add_argument("--seeded-methods", default="sft,sdft,rl_patch", help="Methods trained with every seed of --seeds")
    p.add_argument("--train-rows", type=int, default=800, help="GSM8K training rows train[:N] (DESIGN.md's SFT rows are train[:800]; see --estimate)")
    p.add_argument("--batch-size", type=int, default=8, help="Rows per optimizer step (SFT batch size; SDFT: rows per step, one sample each)")
    p.add_argument("--max-steps", type=int, default=-1, help="Cap on training steps (smoke tests); -1: the full epochs")
    p.add_argument("--save-steps", type=int, default=8, help="Checkpoint every N steps so an interrupted run resumes")
    p.add_argument(
        "--precision", choices=("auto", "bf16", "fp32"), default="auto",
        help="Training precision: bf16 mixed precision or float32; auto takes bf16 only where the hardware computes it natively "
        "(on a CPU without AVX-512 BF16 it is emulated and several times slower than float32)",
    )
    p.add_argument("--gsm8k-limit", type=int, default=100, help="GSM8K test items (accuracy and held-out answer NLL)")
    p.add_argument("--mc-limit", type=int, default=200, help="Items of each general benchmark (ARC-Easy test, HellaSwag validation)")
    p.add_argument("--kl-prompts", type=int, default=40, help="Prompts of each KL measure")
    p.add_argument("--kl-tokens", type=int, default=64, help="Tokens sampled from the base model per KL prompt")
    p.add_argument("--max-new-tokens", type=int, default=256, help="Token limit of a GSM8K answer")
    p.add_argument("--eval-batch-size", type=int, default=16, help="Sequences per forward pass / prompts per generation batch in evaluation")
    p.add_argument("--rl-rewriter", default=str(DEFAULT_RL_REWRITER), help="Trained rewriter (folder or Hub id) of rl_patch")
    p.add_argument("--rewrite-batch-size", type=int, default=16, help="Rows per rewriting batch")
    p.add_argument("--rewrite-max-new-tokens", type=int, default=None, help="Token limit of a rewrite (default: the rewriter's own)")
    p.add_argument("--patch-num-candidates", type=int, default=8, help="Best-of-K: candidates per row of both patches (K > 1 samples with RewriterConfig.sampling)")
    p.add_argument(
        "--patch-require-lower-nll", action=argparse.BooleanOptionalAction, default=True,
        help="Keep a rewrite only when its pi_0 NLL is below the expert answer's (--no-patch-require-lower-nll: the paper's rule)",
    )
    p.add_argument("--sdft-teacher", choices=("base", "ema"), default="base", help="SDFT teacher: pi_0 (base) or an EMA of the student at rate 0.01 (the paper's code)")
    p.add_argument("--sdft-max-completion-length", type=int, default=256, help="Token limit of an SDFT sample")
    p.add_argument("--sdft-temperature", type=float, default=1.0, help="SDFT sampling temperature")
    p.add_argument("--sdft-demonstration", choices=("raw", "stripped"), default="raw", help="The expert answer shown to SDFT's teacher, with or without annotations")
    p.add_argument("--results-dir", default=str(REPO / "benchmarks" / "results"), help="Where forgetting.json and forgetting/<name>.json go")
    p.add_argument("--work-dir", default=str(REPO / "outputs" / "forgetting"), help="Checkpoints, trained models and per-item details (not committed)")
    p.add_argument("--keep-models", action="store_true", help="Keep the trained models after evaluation (about 0.5 GB each)")
    p.add_argument("--redo", default="", help="Comma-separated stage names to recompute even if done (e.g. 'dft,base')")
    p.add_argument("--estimate", action="store_true", help="Print the plan's stages and wall time for train[:800] and train[:400] (and --train-rows), then stop")
    p.add_argument("--smoke", action="store_true", help="Tiny end-to-end check: 4 rows, 1 step, 2 items per task, best-of-2; results under the work dir")
    args = p.parse_args(argv)
    if args.smoke:
        args.train_rows, args.batch_size, args.max_steps, args.gsm8k_limit, args.mc_limit = 4, 4, 1, 2, 2
        args.kl_prompts, args.kl_tokens, args.max_new_tokens, args.sweep = 2, 4, 16, "1e-4:1"
        args.rewrite_max_new_tokens = args.rewrite_max_new_tokens or 48
        args.sdft_max_completion_length = min(args.sdft_max_completion_length, 16)
        args.patch_num_candidates = min(args.patch_num_candidates, 2)
        if args.work_dir == p.get_default("work_dir"):
            args.work_dir = str(REPO / "outputs" / "forgetting-smoke")
        if args.results_dir == p.get_default("results_dir"):
            args.results_dir = str(Path(args.work_dir) / "results")
    unknown = (set(args.methods.split(",")) | set(args.seeded_methods.split(",")) - {""}) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not args.seed_list or len(set(args.seed_list)) != len(args.seed_list):
        p.error(f"--seeds needs distinct integers, got {args.seeds!r}")
    return args


class ForgettingBenchmark:
    """The stages of the benchmark, each skipped when its result file is there with the same settings."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.time()
        self.results_dir = Path(args.results_dir)
        self.stage_dir = self.results_dir / "forgetting"
        self.work_dir = Path(args.work_dir)
        self.redo = {s for s in args.redo.split(",") if s}
        self.methods = [m for m in METHODS if m in args.methods.split(",")]
        self.seeds = list(args.seed_list)
        self.seeded_methods = {m for m in args.seeded_methods.split(",") if m}
        self.sweep = [Budget.parse(s) for s in args.sweep.split(",") if s]
        self.eval_config = EvaluationConfig(
            limit={"gsm8k": args.gsm8k_limit, **{t: args.mc_limit for t in GENERAL_TASKS}},
            batch_size=args.eval_batch_size,
            generation_batch_size=args.eval_batch_size,
            max_new_tokens=args.max_new_tokens,
            kl_prompts=args.kl_prompts,
            kl_tokens=args.kl_tokens,
            seed=0,
        )
        self.sdft_options = SDFTOptions(
            teacher=args.sdft_teacher, max_completion_length=args.sdft_max_completion_length, temperature=args.sdft_temperature,
            demonstration=args.sdft_demonstration,
        )
        self.bf16 = _use_bf16(args.precision, self.stage_dir)
        self.rates = dict(DEFAULT_RATES)
        self._base: tuple[Any, Any] | None = None
        self._data = None
        self._kl_reference = None
        self.skipped: dict[str, str] = {}

    # ------------------------------------------------------------------ bookkeeping
    def log(self, message: str) -> None:
        elapsed = time.time() - self.started
        print(f"[forgetting {elapsed / 60:6.1f} min] {message}", flush=True)

    @property
    def eval_settings(self) -> dict[str, Any]:
        return {"model": self.args.model, **{k: v for k, v in self.eval_config.to_dict().items() if k != "show_progress"}}

    def seeds_of(self, method: str) -> list[int]:
        return self.seeds if method in self.seeded_methods else self.seeds[:1]

    def stage_name(self, method: str, seed: int) -> str:
        """The first seed's stage keeps the method's name (as in the first run); later seeds are ``<method>_seed<N>``."""
        return method if seed == self.seeds[0] else f"{method}_seed{seed}"

    def train_settings(self, method: str, budget: Budget, seed: int) -> dict[str, Any]:
        a = self.args
        settings = {
            "method": method, "lr": budget.lr, "epochs": budget.epochs, "seed": seed, "train_rows": a.train_rows,
            "batch_size": a.batch_size, "max_steps": a.max_steps, "bf16": self.bf16, "gradient_checkpointing": True, "eval": self.eval_settings,
        }
        if method in ("sft_stripped", "stripped_patch"):
            settings["targets"] = "expert answers without <<...>> calculator annotations"
        if method == "sdft":
            settings["sdft"] = self.sdft_options.to_dict()
        if method.endswith("_patch"):
            from hf_patchdist.verifiers import GATE_VERSION

            settings["rewriter"] = _portable(a.rl_rewriter) if method == "rl_patch" else f"prompted:{a.model}"
            settings["rewrite_max_new_tokens"] = a.rewrite_max_new_tokens
            settings["num_candidates"] = a.patch_num_candidates
            settings["require_lower_nll"] = a.patch_require_lower_nll
            # The patch depends on the gate and on the adapter's weights, not only on the folder's
            # name: a retrained rewriter or a stricter gate must not reuse a stored result.
            settings["gate"] = self._gate(method)
            settings["gate_version"] = GATE_VERSION
            # The backend that generates the rewrites (OpenVINO bf16 and transformers write different samples).
            from hf_patchdist.generation.registry import default_backend

            settings["rewrite_backend"] = dict(zip(("name", "options"), default_backend(a.model, "cpu", {})))
            if method == "rl_patch":
                settings["adapter_sha256"] = _adapter_sha256(a.rl_rewriter)
        return settings

    def _gate(self, method: str) -> dict[str, Any]:
        from hf_patchdist.rewriter import RewriterConfig
        from hf_patchdist.verifiers import get_verifier

        config = RewriterConfig.from_folder(self.args.rl_rewriter) if method == "rl_patch" else RewriterConfig(base_model=self.args.model)
        return get_verifier(config.verifier).to_dict()

    def path(self, name: str) -> Path:
        return self.stage_dir / f"{name}.json"

    def done(self, name: str, settings: dict[str, Any]) -> dict[str, Any] | None:
        """The stored result of a stage, if it was computed with these settings."""
        path = self.path(name)
        if name in self.redo or not path.is_file():
            return None
        record = json.loads(path.read_text())
        if record.get("settings") != json.loads(json.dumps(settings)):
            raise SystemExit(
                f"{path} was computed with other settings:\n  stored:  {record.get('settings')}\n  current: {settings}\n"
                f"Pass --redo {name} to recompute it, or another --results-dir."
            )
        return record

    def save(self, name: str, record: dict[str, Any]) -> dict[str, Any]:
        write_json(record, self.path(name))
        self.log(f"wrote {self.path(name)}")
        return record

    # ------------------------------------------------------------------ shared inputs
    @property
    def base(self) -> tuple[Any, Any]:
        if self._base is None:
            from hf_patchdist.models import load_model_and_tokenizer

            self._base = load_model_and_tokenizer(self.args.model)
        return self._base

    @property
    def data(self):
        if self._data is None:
            self._data = load_tasks(DEFAULT_TASKS, data_dir=self.args.data_dir, config=self.eval_config)
        return self._data

    @property
    def kl_reference(self) -> dict[str, Any]:
        """The pi_0 samples of the KL measures, sampled once and stored with the results."""
        if self._kl_reference is None:
            path = self.path("kl_reference")
            stored = json.loads(path.read_text()) if path.is_file() else None
            if stored and stored.get("settings") == json.loads(json.dumps(self.eval_settings)):
                self._kl_reference = stored["reference"]
            else:
                self.log("sampling the base model's continuations for the KL measures")
                model, tokenizer = self.base
                start = time.time()
                self._kl_reference = build_kl_reference(model, tokenizer, self.data, self.eval_config)
                self.rates["kl_reference"] = time.time() - start
                write_json({"settings": self.eval_settings, "reference": self._kl_reference}, path)
        return self._kl_reference

    def train_rows(self) -> list[dict[str, str]]:
        from hf_patchdist.data import load_any_dataset

        path = Path(self.args.data_dir) / "gsm8k" / "train.jsonl"
        return list(load_any_dataset(str(path), limit=self.args.train_rows))

    def target_nll(self, *, stripped: bool) -> float:
        """Mean pi_0 NLL of the training answers as they are (sft, dft) or without annotations (sft_stripped), stored once."""
        from hf_patchdist.verifiers.text_checks import strip_calculator_annotations

        name = "stripped_targets" if stripped else "original_targets"
        settings = {"model": self.args.model, "train_rows": self.args.train_rows, **({"stripped": True} if stripped else {})}
        record = self.done(name, settings)
        if record is None:
            from hf_patchdist.scoring import QAScorer, render_qa_prompt

            self.log(f"scoring the {self.args.train_rows} {'stripped' if stripped else 'original'} training answers under the base model")
            model, tokenizer = self.base
            rows = self.train_rows()
            answers = [strip_calculator_annotations(r["answer"]) if stripped else r["answer"] for r in rows]
            scores = QAScorer(model, tokenizer, batch_size=self.args.eval_batch_size).score([render_qa_prompt(tokenizer, r["question"]) for r in rows], answers)
            finite = [v for v in scores.nll if not math.isnan(v)]
            record = self.save(name, {"settings": settings, "target_nll": sum(finite) / len(finite), "rows": len(finite)})
        return record["target_nll"]

    def local_base_folder(self) -> Path:
        """pi_0 saved once as a plain model folder in the work dir: SDFT loads its teacher again from the student's
        ``config._name_or_path``, which must be a local folder holding exactly the weights the student starts from."""
        from hf_patchdist.models import load_tokenizer, resolve_model_path

        folder = self.work_dir / "base_model"
        if not (folder / "config.json").is_file():
            import torch
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(resolve_model_path(self.args.model), dtype=torch.float32)
            _save_model(model, load_tokenizer(self.args.model), folder)
            del model
        return folder

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, name: str, model: Any, tokenizer: Any) -> dict[str, Any]:
        self.log(f"evaluating {name}")
        start = time.time()
        base_model = None if model is self.base[0] else self.base[0]
        metrics, details = evaluate_model(
            model, tokenizer, self.data, config=self.eval_config, base=base_model, kl_reference=self.kl_reference if base_model is not None else None
        )
        self.rates["eval"] = time.time() - start
        write_json(details, self.work_dir / "details" / f"{name}.json")
        return metrics

    def base_metrics(self) -> dict[str, Any]:
        record = self.done("base", {"method": "base", "eval": self.eval_settings})
        if record is None:
            start = time.time()
            model, tokenizer = self.base
            metrics = self.evaluate("base", model, tokenizer)
            metrics.update(kl_from_base=0.0, kl_general=0.0, forgetting_mean=0.0, gsm8k_gain=0.0, heldout_nll_gain=0.0)
            metrics.update({f"forgetting_{t}": 0.0 for t in GENERAL_TASKS})
            record = self.save("base", {"settings": {"method": "base", "eval": self.eval_settings}, **metrics, "target_nll": None, "wall_s": time.time() - start})
        return record

    # ------------------------------------------------------------------ training
    def _sft_config_kwargs(self, run_dir: Path, budget: Budget, seed: int, loss_type: str) -> dict[str, Any]:
        import torch

        a = self.args
        return dict(
            output_dir=str(run_dir / "checkpoints"),
            use_cpu=not torch.cuda.is_available(),  # transformers refuses bf16 on a CPU without it
            per_device_train_batch_size=a.batch_size,
            gradient_accumulation_steps=1,
            learning_rate=budget.lr,
            lr_scheduler_type="constant",
            warmup_steps=0,
            num_train_epochs=budget.epochs,
            max_steps=a.max_steps,
            bf16=self.bf16,
            gradient_checkpointing=True,  # TRL's default for SFTConfig and SDFTConfig alike, stated so both runs show it
            seed=seed,
            data_seed=seed,
            loss_type=loss_type,
            max_length=1024,
            logging_steps=10,
            save_strategy="steps",
            save_steps=a.save_steps,
            save_total_limit=1,
            report_to="none",
            dataloader_num_workers=0,
        )

    def _rewriter(self, method: str):
        from hf_patchdist.rewriter import Rewriter

        a = self.args
        options = dict(batch_size=a.rewrite_batch_size, num_candidates=a.patch_num_candidates, require_lower_nll=a.patch_require_lower_nll)
        if method == "rl_patch":
            if not Path(a.rl_rewriter).is_dir() and Path(a.rl_rewriter).is_absolute():
                raise FileNotFoundError(f"The trained rewriter {a.rl_rewriter} is not there yet (issue 4 commits it).")
            rewriter = Rewriter.from_pretrained(a.rl_rewriter, **options)
        else:
            rewriter = Rewriter(a.model, **options)
        if a.rewrite_max_new_tokens is not None:
            rewriter.config.generation = {**rewriter.config.generation, "max_new_tokens": a.rewrite_max_new_tokens}
        return rewriter

    def _trainer(self, method: str, kwargs: dict[str, Any], run_dir: Path, model: Any, tokenizer: Any, info: dict[str, Any], resuming: bool):
        """The trainer of one method, and what it reports before training (patch statistics, the targets' NLL)."""
        from forgetting_methods import SampleNLLRecorder, distinct_rows_per_step, sdft_config_kwargs, sdft_dataset, sft_dataset

        rows = self.train_rows()
        if method.endswith("_patch"):
            from hf_patchdist.trainers import DistributionPatchConfig, DistributionPatchTrainer

            start = time.time()
            trainer = DistributionPatchTrainer(
                model=model, args=DistributionPatchConfig(**kwargs), train_dataset=sft_dataset(rows, strip_annotations=method == "stripped_patch"),
                processing_class=tokenizer, rewriter=self._rewriter(method),
            )
            self.rates["rewrite_row"] = (time.time() - start) / max(len(rows), 1)
            stats = trainer.patch_statistics
            info["patch"] = stats.to_dict() if stats is not None else None
            info["patch_from_cache"] = trainer.patch_result.from_cache
            info["target_nll"] = stats.target_nll if stats is not None else None
            info["rewrite_s"] = time.time() - start
            return trainer, None
        if method == "sdft":
            from trl.experimental.sdft import SDFTConfig, SDFTTrainer

            config = SDFTConfig(**sdft_config_kwargs(kwargs, self.sdft_options))
            if distinct_rows_per_step(config) != self.args.batch_size:
                raise ValueError(f"SDFT step covers {distinct_rows_per_step(config)} distinct rows, SFT's {self.args.batch_size}")
            log_path = run_dir / "sdft_samples.jsonl"
            if not resuming:
                log_path.unlink(missing_ok=True)  # samples of an abandoned attempt are not this run's
            recorder = SampleNLLRecorder(self.base[0], self.base[1], log_path, batch_size=self.args.eval_batch_size)
            dataset = sdft_dataset(rows, strip_demonstration=self.sdft_options.demonstration == "stripped")
            trainer = SDFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[recorder])
            info["sdft"] = {
                **self.sdft_options.to_dict(), "generation_batch_size": config.generation_batch_size, "steps_per_generation": config.steps_per_generation,
                "distinct_rows_per_step": distinct_rows_per_step(config), "generator": SDFT_GENERATOR_NOTE,
            }
            return trainer, recorder
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(model=model, args=SFTConfig(**kwargs), train_dataset=sft_dataset(rows, strip_annotations=method == "sft_stripped"), processing_class=tokenizer)
        info["target_nll"] = self.target_nll(stripped=method == "sft_stripped")
        return trainer, None

    def train(self, method: str, budget: Budget, seed: int, run_name: str) -> tuple[dict[int, Path], dict[str, Any]]:
        """Train one method; returns the model folder after each epoch and what the run reports."""
        import torch
        from transformers import AutoModelForCausalLM, TrainerCallback, set_seed
        from transformers.trainer_utils import get_last_checkpoint

        from hf_patchdist.models import load_tokenizer, resolve_model_path

        run_dir = self.work_dir / run_name
        epoch_dirs = {k: run_dir / f"epoch-{k}" for k in range(1, budget.epochs + 1)}
        info_path = run_dir / "train_info.json"
        if all((d / "config.json").is_file() for d in epoch_dirs.values()) and info_path.is_file():
            self.log(f"{run_name}: trained models found in {run_dir}, skipping training")
            return epoch_dirs, json.loads(info_path.read_text())

        tokenizer = load_tokenizer(self.args.model)
        source = str(self.local_base_folder()) if method == "sdft" else resolve_model_path(self.args.model)
        # float32 master weights with bf16 autocast (bf16=True): pure-bf16 weights would round away
        # most updates at these learning rates.
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        kwargs = self._sft_config_kwargs(run_dir, budget, seed, "dft" if method == "dft" else "nll")
        checkpoint = get_last_checkpoint(kwargs["output_dir"]) if Path(kwargs["output_dir"]).is_dir() else None
        info: dict[str, Any] = {}
        set_seed(seed)  # the patches' sampled candidates too, not only training
        trainer, recorder = self._trainer(method, kwargs, run_dir, model, tokenizer, info, resuming=checkpoint is not None)

        class SaveEachEpoch(TrainerCallback):
            def on_epoch_end(self, args, state, control, model=None, **kw):  # noqa: ANN001
                _save_model(model, tokenizer, epoch_dirs.get(round(state.epoch or 0)))

        trainer.add_callback(SaveEachEpoch())
        if checkpoint:
            self.log(f"{run_name}: resuming from {checkpoint}")
        start = time.time()
        output = trainer.train(resume_from_checkpoint=checkpoint)
        steps = max(trainer.state.global_step, 1)
        self.rates["sdft_step" if method == "sdft" else "sft_step"] = (time.time() - start) / steps
        # A capped run (--max-steps) ends inside an epoch: its final model stands for the last epoch.
        _save_model(trainer.model, tokenizer, epoch_dirs[budget.epochs], overwrite=False)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        info.update(
            train_s=time.time() - start, steps=trainer.state.global_step, train_loss=output.training_loss,
            first_logged_loss=losses[0] if losses else None, last_logged_loss=losses[-1] if losses else None,
        )
        if recorder is not None:
            samples = recorder.summary()
            info["sdft"].update({k: v for k, v in samples.items() if k != "sample_nll"})
            info["target_nll"] = samples["sample_nll"]
            # Every sample with its pi_0 NLL, kept beside the evaluation details (the run folder goes after evaluation).
            (self.work_dir / "details").mkdir(parents=True, exist_ok=True)
            shutil.copy(recorder.log_path, self.work_dir / "details" / f"{run_name}_sdft_samples.jsonl")
        write_json(info, info_path)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        del trainer, model
        gc.collect()
        return epoch_dirs, info

    def evaluate_folder(self, name: str, folder: Path) -> dict[str, Any]:
        from hf_patchdist.models import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(str(folder))
        metrics = self.evaluate(name, model, tokenizer)
        del model
        gc.collect()
        base = self.base_metrics()
        return {**metrics, **compare_to_base(metrics, base, general_tasks=list(GENERAL_TASKS), new_task="gsm8k")}

    def run_training_stage(self, method: str, budget: Budget, seed: int, names: dict[int, str]) -> dict[str, dict[str, Any]]:
        """Train once, evaluate the model after each epoch named in ``names`` (epoch -> stage name)."""
        settings = {k: self.train_settings(method, Budget(budget.lr, k), seed) for k in names}
        records = {names[k]: self.done(names[k], settings[k]) for k in names}
        if all(r is not None for r in records.values()):
            return records
        start = time.time()
        run_name = f"{method}_{budget.tag}_seed{seed}"
        epoch_dirs, info = self.train(method, budget, seed, run_name)
        for k, name in names.items():
            if records[name] is not None:
                continue
            metrics = self.evaluate_folder(name, epoch_dirs[k])
            records[name] = self.save(
                name,
                {"settings": settings[k], **metrics, "target_nll": info.get("target_nll"), "lr": budget.lr, "epochs": k, "seed": seed,
                 "train_s": info.get("train_s"), "rewrite_s": info.get("rewrite_s"),
                 "train": {key: v for key, v in info.items() if key != "target_nll"}, "wall_s": time.time() - start, "loadavg": os.getloadavg()},
            )
        if not self.args.keep_models:
            shutil.rmtree(self.work_dir / run_name, ignore_errors=True)
        return records

    # ------------------------------------------------------------------ stages
    @staticmethod
    def sweep_name(budget: Budget, seed: int) -> str:
        return f"sweep_sft_{budget.tag}_seed{seed}"

    def sweep_points(self) -> list[Budget]:
        return [Budget(run.lr, k) for run in self.sweep for k in range(1, run.epochs + 1)]

    def run_sweep(self) -> list[dict[str, Any]]:
        seed = self.seeds[0]
        for run in self.sweep:
            names = {k: self.sweep_name(Budget(run.lr, k), seed) for k in range(1, run.epochs + 1)}
            self.log(f"sweep: plain SFT lr {run.lr:g} for up to {run.epochs} epoch(s) -> {', '.join(names.values())}")
            self.run_training_stage("sft", run, seed, names)
            self.report_left()
        return [json.loads(self.path(self.sweep_name(b, seed)).read_text()) for b in self.sweep_points()]

    def choose_budget(self, sweep: list[dict[str, Any]]) -> Budget:
        if self.args.budget:
            return Budget.parse(self.args.budget)
        if not sweep:
            raise SystemExit("No sweep points and no --budget: pass --sweep LR:EPOCHS,... or --budget LR:EPOCHS.")
        best = max(sweep, key=lambda r: (r.get("kl_general") or 0.0))
        budget = Budget(best["lr"], best["epochs"])
        self.log(f"chosen budget {budget.tag}: plain SFT's largest drift on general chat prompts (kl_general {best.get('kl_general'):.3f})")
        return budget

    def stored_result(self, method: str, budget: Budget, seed: int) -> dict[str, Any] | None:
        """A stage's stored result if it was computed with the current settings, else None (never raises)."""
        name = "base" if method == "base" else self.stage_name(method, seed)
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            settings = {"method": "base", "eval": self.eval_settings} if method == "base" else self.train_settings(method, budget, seed)
        except (ImportError, FileNotFoundError):
            return None
        record = json.loads(path.read_text())
        if record.get("settings") != json.loads(json.dumps(settings)):
            self.log(f"{name}: the stored result was computed with other settings; left out (--methods {method} --redo {name} recomputes it)")
            return None
        return record

    def run_method(self, method: str, budget: Budget, seed: int) -> dict[str, Any] | None:
        name = self.stage_name(method, seed)
        try:
            settings = self.train_settings(method, budget, seed)
            record = self.done(name, settings)
            if record is not None:
                return record
            if method == "sft" and seed == self.seeds[0]:
                # The sweep already trained plain SFT at this budget and seed: the same run, not a new one.
                sweep_record = self.done(self.sweep_name(budget, seed), settings) if budget in self.sweep_points() else None
                if sweep_record is not None:
                    return self.save(name, sweep_record)
            return self.run_training_stage(method, budget, seed, {budget.epochs: name})[name]
        except (ImportError, FileNotFoundError) as error:
            # A prerequisite from another part of the project is missing: report it, go on with the rest.
            self.skipped[name] = f"{type(error).__name__}: {error}"
            self.log(f"SKIPPED {name}: {self.skipped[name]}")
            return None

    def plan(self, train_rows: int | None = None) -> dict[str, Any]:
        """The whole run's stages and seconds from scratch (:func:`forgetting_summary.estimate_run`) at the current rates."""
        a = self.args
        budget = Budget.parse(a.budget) if a.budget else max(self.sweep_points(), key=lambda b: (b.lr, b.epochs), default=Budget(1e-4, 1))
        return estimate_run(
            train_rows=train_rows or a.train_rows, batch_size=a.batch_size, sweep=[] if a.budget else [(r.lr, r.epochs) for r in self.sweep],
            budget=(budget.lr, budget.epochs), methods=self.methods, seeds=self.seeds, seeded_methods=self.seeded_methods, rates=self.rates,
            max_steps=a.max_steps,
        )

    def stages_left(self) -> list[str]:
        left = [] if "base" not in self.methods or self.path("base").is_file() else ["base"]
        if not self.args.budget:
            left += [self.sweep_name(b, self.seeds[0]) for b in self.sweep_points() if not self.path(self.sweep_name(b, self.seeds[0])).is_file()]
        for method in self.methods:
            if method != "base":
                left += [n for n in (self.stage_name(method, s) for s in self.seeds_of(method)) if not self.path(n).is_file() and n not in self.skipped]
        return left

    def report_left(self) -> None:
        left = self.stages_left()
        plan = self.plan()
        done_share = 1 - len(left) / max(len(self.stages_left_from_scratch()), 1)
        estimate = plan["total_s"] * (1 - done_share)
        self.log(f"left: {', '.join(left) or 'nothing'}" + (f"  (rough estimate {estimate / 3600:.1f} h at this run's rates)" if left else ""))

    def stages_left_from_scratch(self) -> list[str]:
        names = ["base"] if "base" in self.methods else []
        names += [] if self.args.budget else [self.sweep_name(b, self.seeds[0]) for b in self.sweep_points()]
        return names + [self.stage_name(m, s) for m in self.methods if m != "base" for s in self.seeds_of(m)]

    # ------------------------------------------------------------------ the whole run
    def run(self) -> dict[str, Any]:
        a = self.args
        loadavg_start = os.getloadavg()
        self.log(f"model {a.model}, GSM8K train[:{a.train_rows}], batch {a.batch_size}, seeds {self.seeds} ({', '.join(sorted(self.seeded_methods))}), data {a.data_dir}")
        self.log(f"results in {self.stage_dir}, work files in {self.work_dir}")
        self.report_left()
        base = self.base_metrics()
        sweep = self.run_sweep() if not a.budget else []
        budget = self.choose_budget(sweep)
        self.report_left()
        records: dict[str, dict[int, dict[str, Any]]] = {}
        if "base" in self.methods or self.path("base").is_file():
            records["base"] = {self.seeds[0]: base}
        # Every method's first seed, then the later seeds: the comparison first, its error bars after.
        order = [(m, s) for m in METHODS if m != "base" for s in self.seeds_of(m)[:1]]
        order += [(m, s) for m in METHODS if m != "base" for s in self.seeds_of(m)[1:]]
        for method, seed in order:
            if method not in self.methods:
                # Left out by --methods: keep its stored result, so a partial run does not shrink
                # forgetting.json to the methods it ran.
                record = self.stored_result(method, budget, seed)
            else:
                self.log(f"method {method} seed {seed} at {budget.tag}")
                record = self.run_method(method, budget, seed)
                self.report_left()
            if record is not None:
                records.setdefault(method, {})[seed] = record
                self.assemble(records, sweep, budget, loadavg_start)
        return self.assemble(records, sweep, budget, loadavg_start)

    def assemble(self, records: dict[str, dict[int, dict[str, Any]]], sweep: list[dict[str, Any]], budget: Budget, loadavg_start: Any) -> dict[str, Any]:
        a = self.args
        ordered = {m: [records[m][s] for s in sorted(records[m], key=self.seeds.index)] for m in METHODS if m in records}
        methods = {m: aggregate_seeds(runs, SUMMARY_KEYS) for m, runs in ordered.items()}
        goals = goal_checks(methods, ordered.get("sft", []))
        sft_runs = ordered.get("sft", [])
        seed_noise = None
        if len(sft_runs) > 1:
            keys = ("gsm8k", "arc_easy", "hellaswag", "forgetting_mean", "kl_from_base", "kl_general", "heldout_answer_nll")
            seed_noise = {k: abs(sft_runs[0][k] - sft_runs[1][k]) for k in keys if sft_runs[0].get(k) is not None and sft_runs[1].get(k) is not None}
        summary = {
            "methods": methods,
            "goals": goals,
            "meets_goal": goals["meets_goal"],
            "control_fails_goal": goals["control_fails_goal"],
            "config": {
                "model": a.model, "train_rows": f"train[:{a.train_rows}]", "batch_size": a.batch_size, "lr": budget.lr, "epochs": budget.epochs,
                "seeds": self.seeds, "seeded_methods": sorted(self.seeded_methods), "bf16": self.bf16, "gradient_checkpointing": True,
                "lr_scheduler": "constant", "format": "conversational prompt/completion",
                "max_steps": a.max_steps, "data_dir": a.data_dir, "evaluation": self.eval_settings, "rl_rewriter": _portable(a.rl_rewriter),
                "patch": {"num_candidates": a.patch_num_candidates, "require_lower_nll": a.patch_require_lower_nll},
                "sdft": {**self.sdft_options.to_dict(), "rows_per_step": a.batch_size, "generator": SDFT_GENERATOR_NOTE,
                         "step_mapping": "one sample per row, batch rows per optimizer step, one generation per step: the SFT runs' steps, epochs and examples seen"},
                "budget_rule": "given by --budget" if a.budget else "sweep point with the largest kl_general of plain SFT",
            },
            "sweep": [{k: r.get(k) for k in ("lr", "epochs", "seed", "gsm8k", "arc_easy", "hellaswag", "forgetting_mean", "kl_from_base", "kl_general", "heldout_answer_nll", "target_nll")} for r in sweep],
            "seed_noise": seed_noise,
            "skipped": self.skipped,
            "wall_s_this_process": time.time() - self.started,
            "loadavg": {"start": loadavg_start, "now": os.getloadavg()},
        }
        write_json(summary, self.results_dir / "forgetting.json")
        self.write_markdown(summary)
        return summary

    def write_markdown(self, summary: dict[str, Any]) -> None:
        methods = summary["methods"]
        c = summary["config"]
        lines = [f"# Forgetting benchmark ({c['model']}, GSM8K {c['train_rows']}, lr {c['lr']:g}, {c['epochs']} epoch(s), seeds {c['seeds']})", "",
                 "Values of methods trained with several seeds are their mean.", "", markdown_table(methods), ""]
        if summary["sweep"]:
            sweep = {f"sft lr {r['lr']:g} ep {r['epochs']}": r for r in summary["sweep"]}
            lines += [f"## Plain-SFT sweep (seed {c['seeds'][0]})", "", markdown_table(sweep), ""]
        lines += extra_markdown(summary)
        if summary["skipped"]:
            lines += ["## Skipped", ""] + [f"- {m}: {why}" for m, why in summary["skipped"].items()] + [""]
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        (self.stage_dir / "report.md").write_text("\n".join(lines))
        plot_gain_vs_forgetting(
            methods, self.stage_dir / "gain_vs_forgetting.png", spread=seed_spread(methods),
            title=f"Forgetting benchmark: GSM8K {c['train_rows']} fine-tuning of SmolLM2-135M-Instruct, one budget for every method",
        )


def _use_bf16(precision: str, stage_dir: Path) -> bool:
    """bf16 or not; ``auto`` keeps the precision of the trained stages already stored, so a run resumed
    on other hardware does not mix precisions between methods, and otherwise follows the hardware."""
    if precision != "auto":
        return precision == "bf16"
    for path in sorted(stage_dir.glob("*.json")):
        stored = json.loads(path.read_text()).get("settings")
        if isinstance(stored, dict) and "bf16" in stored:
            return bool(stored["bf16"])
    import torch

    from hf_patchdist.models import default_dtype

    return default_dtype() == torch.bfloat16


def _adapter_sha256(folder: str) -> str | None:
    path = Path(folder) / "adapter_model.safetensors"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _portable(source: str) -> str:
    """A rewriter folder inside the repository as a repository-relative path, so a stored result matches on any clone."""
    path = Path(source).resolve()
    return path.relative_to(REPO).as_posix() if path.is_dir() and path.is_relative_to(REPO) else source


def _save_model(model: Any, tokenizer: Any, folder: Path | None, *, overwrite: bool = True) -> None:
    if folder is None or (not overwrite and (folder / "config.json").is_file()):
        return
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def print_estimate(benchmark: ForgettingBenchmark) -> dict[str, Any]:
    """The plan at 800 and 400 training rows (and at --train-rows), stage by stage, at the default rates."""
    sizes = sorted({800, 400, benchmark.args.train_rows}, reverse=True)
    plans = {f"train[:{n}]": benchmark.plan(n) for n in sizes}
    for name, plan in plans.items():
        print(f"{name}: {plan['steps_per_epoch']} steps/epoch, {plan['total_h']:.1f} h in all")
        for stage in plan["stages"]:
            print(f"    {stage['stage']:<44} {stage['seconds'] / 3600:6.2f} h")
    return {"estimate": plans}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    benchmark = ForgettingBenchmark(args)
    summary = print_estimate(benchmark) if args.estimate else benchmark.run()
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
