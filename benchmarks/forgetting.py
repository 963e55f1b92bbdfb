#!/usr/bin/env python
"""Downstream gain and forgetting of SFT, DFT, prompted-rewrite SFT and RL-rewrite SFT, against the base.

With the embedded default model and one SFT budget for every method (the same GSM8K training rows,
by default ``train[:128]``; same epochs, learning rate, batch 8, seed; full fine-tuning, bf16 where the CPU computes it natively, else float32,
conversational prompt/completion, constant learning rate), train and evaluate:

* ``base``: the model itself;
* ``sft``: plain ``trl.SFTTrainer``;
* ``dft``: ``SFTTrainer`` with TRL's Dynamic Fine-Tuning loss (``loss_type="dft"``);
* ``prompted_patch``: ``DistributionPatchTrainer`` with the prompted Rewriter (no adapter) on the same model;
* ``rl_patch``: ``DistributionPatchTrainer`` with the trained rewriter at ``examples/rewriters/gsm8k-smollm2-135m/``.

The budget is chosen first by a small sweep of plain SFT (``--sweep``: learning rates, each trained
for its largest number of epochs with a model saved after every epoch, so one run gives every epoch
count; with a constant learning rate, epoch k of a longer run is the k-epoch budget), then a second
seed at the chosen budget measures the noise between seeds. The chosen budget is the sweep point
where plain SFT drifts most from the base on general chat prompts (largest ``kl_general``), unless
``--budget LR:EPOCHS`` says otherwise.

Every model is evaluated by :mod:`hf_patchdist.evaluation`: GSM8K test accuracy (greedy, chat
template), ARC-Easy and HellaSwag accuracy by log-likelihood (acc_norm headline, acc raw, gold NLL
per character), held-out GSM8K answer NLL, KL(base || tuned) per token on GSM8K prompts and on
general chat prompts (the same pi_0 samples for every model, stored in ``kl_reference.json``),
forgetting per benchmark and its mean, and the mean pi_0 NLL of each method's training targets.

Resumable: each finished stage writes ``benchmarks/results/forgetting/<name>.json`` at once (commit
them); a rerun, also in a later session on a fresh machine, skips what is done (when its recorded
settings match) and resumes an interrupted training run from its last checkpoint in ``--work-dir``.
The whole comparison goes to ``benchmarks/results/forgetting.json`` (``{"methods": {...},
"config": {...}, ...}``), a table to ``benchmarks/results/forgetting/report.md`` and a picture to
``benchmarks/results/forgetting/gain_vs_forgetting.png``; the last line printed is that JSON object.

Usage:
    python benchmarks/forgetting.py                       # the full run (about 2.5 h on a 2-core CPU)
    python benchmarks/forgetting.py --smoke               # a tiny end-to-end check (minutes), results in outputs/
    python benchmarks/forgetting.py --budget 1e-4:1 --methods base,sft,rl_patch
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

METHODS = ("base", "sft", "dft", "prompted_patch", "rl_patch")
GENERAL_TASKS = ("arc_easy", "hellaswag")
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
DEFAULT_RL_REWRITER = REPO / "examples" / "rewriters" / "gsm8k-smollm2-135m"
# Rates measured on this CPU before the benchmark existed (issue 7, DESIGN.md), for the estimate
# of what is left; replaced by this run's own rates as soon as it has some.
SECONDS_PER_STEP, SECONDS_PER_EVAL, SECONDS_PER_REWRITE_ROW = 50.0, 300.0, 3.0
# What the final comparison keeps of each method (the per-method files keep everything).
SUMMARY_KEYS = (
    "gsm8k", "gsm8k_n", "gsm8k_gain", "heldout_answer_nll", "heldout_nll_gain",
    "arc_easy", "arc_easy_raw", "arc_easy_gold_nll", "arc_easy_n",
    "hellaswag", "hellaswag_raw", "hellaswag_gold_nll", "hellaswag_n",
    "forgetting_arc_easy", "forgetting_hellaswag", "forgetting_mean",
    "kl_from_base", "kl_general", "target_nll", "lr", "epochs", "seed", "wall_s",
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
    p.add_argument("--seed", type=int, default=0, help="Training seed of every method")
    p.add_argument("--noise-seed", type=int, default=1, help="Second seed of plain SFT at the chosen budget (noise between seeds); -1 skips it")
    p.add_argument(
        "--train-rows", type=int, default=128,
        help="GSM8K training rows train[:N], within DESIGN.md's SFT rows train[:800]; 128 (16 steps of 8) fits the whole comparison "
        "in about two hours on a 2-core CPU without AVX-512 (float32 training, about 50 s a step)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="SFT batch size")
    p.add_argument("--max-steps", type=int, default=-1, help="Cap on training steps (smoke tests); -1: the full epochs")
    p.add_argument("--save-steps", type=int, default=8, help="Checkpoint every N steps so an interrupted run resumes")
    p.add_argument(
        "--precision", choices=("auto", "bf16", "fp32"), default="auto",
        help="Training precision: bf16 mixed precision or float32; auto takes bf16 only where the hardware computes it natively "
        "(on a CPU without AVX-512 BF16 it is emulated and several times slower than float32)",
    )
    p.add_argument("--gsm8k-limit", type=int, default=50, help="GSM8K test items (accuracy and held-out answer NLL)")
    p.add_argument("--mc-limit", type=int, default=200, help="Items of each general benchmark (ARC-Easy test, HellaSwag validation)")
    p.add_argument("--kl-prompts", type=int, default=40, help="Prompts of each KL measure")
    p.add_argument("--kl-tokens", type=int, default=64, help="Tokens sampled from the base model per KL prompt")
    p.add_argument("--max-new-tokens", type=int, default=256, help="Token limit of a GSM8K answer")
    p.add_argument("--eval-batch-size", type=int, default=16, help="Sequences per forward pass / prompts per generation batch in evaluation")
    p.add_argument("--rl-rewriter", default=str(DEFAULT_RL_REWRITER), help="Trained rewriter (folder or Hub id) of rl_patch")
    p.add_argument("--rewrite-batch-size", type=int, default=16, help="Rows per rewriting batch")
    p.add_argument("--rewrite-max-new-tokens", type=int, default=None, help="Token limit of a rewrite (default: the rewriter's own)")
    p.add_argument("--results-dir", default=str(REPO / "benchmarks" / "results"), help="Where forgetting.json and forgetting/<name>.json go")
    p.add_argument("--work-dir", default=str(REPO / "outputs" / "forgetting"), help="Checkpoints, trained models and per-item details (not committed)")
    p.add_argument("--keep-models", action="store_true", help="Keep the trained models after evaluation (about 0.5 GB each)")
    p.add_argument("--redo", default="", help="Comma-separated stage names to recompute even if done (e.g. 'dft,base')")
    p.add_argument("--smoke", action="store_true", help="Tiny end-to-end check: 8 rows, 1 step, 2 items per task; results under the work dir")
    args = p.parse_args(argv)
    if args.smoke:
        args.train_rows, args.max_steps, args.gsm8k_limit, args.mc_limit = 8, 1, 2, 2
        args.kl_prompts, args.kl_tokens, args.max_new_tokens, args.sweep = 2, 4, 16, "1e-4:1"
        args.rewrite_max_new_tokens = args.rewrite_max_new_tokens or 48
        if args.work_dir == p.get_default("work_dir"):
            args.work_dir = str(REPO / "outputs" / "forgetting-smoke")
        if args.results_dir == p.get_default("results_dir"):
            args.results_dir = str(Path(args.work_dir) / "results")
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
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
        self.bf16 = _use_bf16(args.precision, self.stage_dir)
        self.rates = {"step": SECONDS_PER_STEP, "eval": SECONDS_PER_EVAL, "rewrite_row": SECONDS_PER_REWRITE_ROW}
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

    def train_settings(self, method: str, budget: Budget, seed: int) -> dict[str, Any]:
        a = self.args
        settings = {
            "method": method, "lr": budget.lr, "epochs": budget.epochs, "seed": seed, "train_rows": a.train_rows,
            "batch_size": a.batch_size, "max_steps": a.max_steps, "bf16": self.bf16, "eval": self.eval_settings,
        }
        if method.endswith("_patch"):
            settings["rewriter"] = _portable(a.rl_rewriter) if method == "rl_patch" else f"prompted:{a.model}"
            settings["rewrite_max_new_tokens"] = a.rewrite_max_new_tokens
            # The patch depends on the gate and on the adapter's weights, not only on the folder's
            # name: a retrained rewriter or a stricter gate must not reuse a stored result.
            settings["gate"] = self._gate(method)
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
                self._kl_reference = build_kl_reference(model, tokenizer, self.data, self.eval_config)
                write_json({"settings": self.eval_settings, "reference": self._kl_reference}, path)
        return self._kl_reference

    def train_rows(self) -> list[dict[str, str]]:
        from hf_patchdist.data import load_any_dataset

        path = Path(self.args.data_dir) / "gsm8k" / "train.jsonl"
        return list(load_any_dataset(str(path), limit=self.args.train_rows))

    def train_dataset(self):
        """GSM8K rows as conversational prompt/completion: the question as the user's turn."""
        from datasets import Dataset

        return Dataset.from_list(
            [
                {"prompt": [{"role": "user", "content": r["question"]}], "completion": [{"role": "assistant", "content": r["answer"]}]}
                for r in self.train_rows()
            ]
        )

    def original_target_nll(self) -> float:
        """Mean pi_0 NLL of the original training answers (the targets of sft and dft), stored once."""
        settings = {"model": self.args.model, "train_rows": self.args.train_rows}
        record = self.done("original_targets", settings)
        if record is None:
            from hf_patchdist.scoring import QAScorer, render_qa_prompt

            self.log(f"scoring the {self.args.train_rows} original training answers under the base model")
            model, tokenizer = self.base
            rows = self.train_rows()
            scores = QAScorer(model, tokenizer, batch_size=self.args.eval_batch_size).score(
                [render_qa_prompt(tokenizer, r["question"]) for r in rows], [r["answer"] for r in rows]
            )
            finite = [v for v in scores.nll if not math.isnan(v)]
            record = self.save("original_targets", {"settings": settings, "target_nll": sum(finite) / len(finite), "rows": len(finite)})
        return record["target_nll"]

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

        if method == "rl_patch":
            source = self.args.rl_rewriter
            if not Path(source).is_dir() and Path(source).is_absolute():
                raise FileNotFoundError(f"The trained rewriter {source} is not there yet (issue 4 commits it).")
            rewriter = Rewriter.from_pretrained(source, batch_size=self.args.rewrite_batch_size)
        else:
            rewriter = Rewriter(self.args.model, batch_size=self.args.rewrite_batch_size)
        if self.args.rewrite_max_new_tokens is not None:
            rewriter.config.generation = {**rewriter.config.generation, "max_new_tokens": self.args.rewrite_max_new_tokens}
        return rewriter

    def train(self, method: str, budget: Budget, seed: int, run_name: str) -> tuple[dict[int, Path], dict[str, Any]]:
        """Train one method; returns the model folder after each epoch and what the run reports."""
        import torch
        from transformers import AutoModelForCausalLM, TrainerCallback
        from transformers.trainer_utils import get_last_checkpoint

        from hf_patchdist.models import load_tokenizer, resolve_model_path

        run_dir = self.work_dir / run_name
        epoch_dirs = {k: run_dir / f"epoch-{k}" for k in range(1, budget.epochs + 1)}
        info_path = run_dir / "train_info.json"
        if all((d / "config.json").is_file() for d in epoch_dirs.values()) and info_path.is_file():
            self.log(f"{run_name}: trained models found in {run_dir}, skipping training")
            return epoch_dirs, json.loads(info_path.read_text())

        tokenizer = load_tokenizer(self.args.model)
        # float32 master weights with bf16 autocast (bf16=True): pure-bf16 weights would round away
        # most updates at these learning rates.
        model = AutoModelForCausalLM.from_pretrained(resolve_model_path(self.args.model), dtype=torch.float32)
        dataset = self.train_dataset()
        kwargs = self._sft_config_kwargs(run_dir, budget, seed, "dft" if method == "dft" else "nll")
        info: dict[str, Any] = {}
        if method.endswith("_patch"):
            from hf_patchdist.trainers import DistributionPatchTrainer, DistributionPatchConfig

            rewriter = self._rewriter(method)
            start = time.time()
            trainer = DistributionPatchTrainer(
                model=model, args=DistributionPatchConfig(**kwargs), train_dataset=dataset, processing_class=tokenizer, rewriter=rewriter
            )
            self.rates["rewrite_row"] = (time.time() - start) / max(len(dataset), 1)
            stats = trainer.patch_statistics
            info["patch"] = stats.to_dict() if stats is not None else None
            info["target_nll"] = stats.target_nll if stats is not None else None
            info["rewrite_s"] = time.time() - start
        else:
            from trl import SFTConfig, SFTTrainer

            trainer = SFTTrainer(model=model, args=SFTConfig(**kwargs), train_dataset=dataset, processing_class=tokenizer)
            info["target_nll"] = self.original_target_nll()

        class SaveEachEpoch(TrainerCallback):
            def on_epoch_end(self, args, state, control, **kw):  # noqa: ANN001
                _save_model(trainer.model, tokenizer, epoch_dirs.get(round(state.epoch or 0)))

        trainer.add_callback(SaveEachEpoch())
        checkpoint = get_last_checkpoint(kwargs["output_dir"]) if Path(kwargs["output_dir"]).is_dir() else None
        if checkpoint:
            self.log(f"{run_name}: resuming from {checkpoint}")
        start = time.time()
        output = trainer.train(resume_from_checkpoint=checkpoint)
        steps = max(trainer.state.global_step, 1)
        self.rates["step"] = (time.time() - start) / steps
        # A capped run (--max-steps) ends inside an epoch: its final model stands for the last epoch.
        _save_model(trainer.model, tokenizer, epoch_dirs[budget.epochs], overwrite=False)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        info.update(
            train_s=time.time() - start, steps=trainer.state.global_step, train_loss=output.training_loss,
            first_logged_loss=losses[0] if losses else None, last_logged_loss=losses[-1] if losses else None,
        )
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
                 "train": {key: v for key, v in info.items() if key != "target_nll"}, "wall_s": time.time() - start},
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
        for run in self.sweep:
            names = {k: self.sweep_name(Budget(run.lr, k), self.args.seed) for k in range(1, run.epochs + 1)}
            self.log(f"sweep: plain SFT lr {run.lr:g} for up to {run.epochs} epoch(s) -> {', '.join(names.values())}")
            self.run_training_stage("sft", run, self.args.seed, names)
            self.report_left()
        return [json.loads(self.path(self.sweep_name(b, self.args.seed)).read_text()) for b in self.sweep_points()]

    def choose_budget(self, sweep: list[dict[str, Any]]) -> Budget:
        if self.args.budget:
            return Budget.parse(self.args.budget)
        if not sweep:
            raise SystemExit("No sweep points and no --budget: pass --sweep LR:EPOCHS,... or --budget LR:EPOCHS.")
        best = max(sweep, key=lambda r: (r.get("kl_general") or 0.0))
        budget = Budget(best["lr"], best["epochs"])
        self.log(f"chosen budget {budget.tag}: plain SFT's largest drift on general chat prompts (kl_general {best.get('kl_general'):.3f})")
        return budget

    def stored_result(self, method: str, budget: Budget) -> dict[str, Any] | None:
        """A method's stored result if it was computed with the current settings, else None (never raises)."""
        path = self.path(method)
        if not path.is_file():
            return None
        settings = {"method": "base", "eval": self.eval_settings} if method == "base" else self.train_settings(method, budget, self.args.seed)
        record = json.loads(path.read_text())
        if record.get("settings") != json.loads(json.dumps(settings)):
            self.log(f"{method}: the stored result was computed with other settings; left out (--methods {method} --redo {method} recomputes it)")
            return None
        return record

    def run_method(self, method: str, budget: Budget) -> dict[str, Any] | None:
        if method == "base":
            return self.base_metrics()
        settings = self.train_settings(method, budget, self.args.seed)
        record = self.done(method, settings)
        if record is not None:
            return record
        if method == "sft":
            # The sweep already trained plain SFT at this budget and seed: the same run, not a new one.
            sweep_record = self.done(self.sweep_name(budget, self.args.seed), settings) if budget in self.sweep_points() else None
            if sweep_record is not None:
                return self.save("sft", sweep_record)
        try:
            records = self.run_training_stage(method, budget, self.args.seed, {budget.epochs: method})
        except (ImportError, FileNotFoundError) as error:
            # A prerequisite from another part of the project is missing: report it, go on with the rest.
            self.skipped[method] = f"{type(error).__name__}: {error}"
            self.log(f"SKIPPED {method}: {self.skipped[method]}")
            return None
        return records[method]

    def stages_left(self, budget: Budget | None) -> list[str]:
        left = []
        if "base" in self.methods and not self.path("base").is_file():
            left.append("base")
        left += [self.sweep_name(b, self.args.seed) for b in self.sweep_points() if not self.args.budget and not self.path(self.sweep_name(b, self.args.seed)).is_file()]
        if budget is None:
            noise_done = self.args.noise_seed < 0 or any(self.stage_dir.glob(f"sweep_sft_*_seed{self.args.noise_seed}.json"))
            methods = [m for m in self.methods if m != "base" and not self.path(m).is_file()]
            return left + methods + (["(at the budget the sweep chooses)"] if methods else []) + (["noise seed"] if not noise_done else [])
        left += [m for m in self.methods if m != "base" and not self.path(m).is_file() and m not in self.skipped]
        if self.args.noise_seed >= 0 and not self.path(self.sweep_name(budget, self.args.noise_seed)).is_file():
            left.append(self.sweep_name(budget, self.args.noise_seed))
        return left

    def report_left(self, budget: Budget | None = None) -> None:
        left = self.stages_left(budget)
        steps_per_epoch = math.ceil(self.args.train_rows / self.args.batch_size)
        if self.args.max_steps > 0:
            steps_per_epoch = min(steps_per_epoch, self.args.max_steps)
        epochs = budget.epochs if budget else 1
        trainings = sum(1 for s in left if not s.startswith("(") and s != "base")
        rewrites = sum(1 for s in left if s.endswith("_patch"))
        estimate = trainings * (epochs * steps_per_epoch * self.rates["step"] + self.rates["eval"]) + rewrites * self.args.train_rows * self.rates["rewrite_row"]
        self.log(f"left: {', '.join(left) or 'nothing'}" + (f"  (rough estimate {estimate / 3600:.1f} h)" if left else ""))

    # ------------------------------------------------------------------ the whole run
    def run(self) -> dict[str, Any]:
        a = self.args
        self.log(f"model {a.model}, GSM8K train[:{a.train_rows}], batch {a.batch_size}, data {a.data_dir}")
        self.log(f"results in {self.stage_dir}, work files in {self.work_dir}")
        self.report_left()
        base = self.base_metrics()
        sweep = self.run_sweep() if not a.budget else []
        budget = self.choose_budget(sweep)
        self.report_left(budget)
        results: dict[str, dict[str, Any]] = {}
        for method in METHODS:
            if method not in self.methods:
                # Left out by --methods: keep its stored result, so a partial run does not shrink
                # forgetting.json to the methods it ran.
                record = self.stored_result(method, budget)
                if record is not None:
                    results[method] = record
                continue
            self.log(f"method {method} at {budget.tag}")
            record = base if method == "base" else self.run_method(method, budget)
            if record is not None:
                results[method] = record
            self.report_left(budget)
            self.assemble(results, sweep, budget, None)
        # The second seed comes last: the methods' comparison is the result, the seed noise its error bar.
        noise = None
        if a.noise_seed >= 0:
            name = self.sweep_name(budget, a.noise_seed)
            self.log(f"noise: plain SFT at {budget.tag} with seed {a.noise_seed}")
            noise = self.run_training_stage("sft", budget, a.noise_seed, {budget.epochs: name})[name]
        return self.assemble(results, sweep, budget, noise)

    def assemble(self, results: dict[str, dict[str, Any]], sweep: list[dict[str, Any]], budget: Budget, noise: dict[str, Any] | None) -> dict[str, Any]:
        a = self.args
        methods = {m: {k: r.get(k) for k in SUMMARY_KEYS if k in r} for m, r in results.items()}
        seed_noise = None
        if noise is not None and "sft" in results:
            keys = ("gsm8k", "arc_easy", "hellaswag", "forgetting_mean", "kl_from_base", "kl_general", "heldout_answer_nll")
            seed_noise = {k: abs(results["sft"][k] - noise[k]) for k in keys if results["sft"].get(k) is not None and noise.get(k) is not None}
        summary = {
            "methods": methods,
            "config": {
                "model": a.model, "train_rows": f"train[:{a.train_rows}]", "batch_size": a.batch_size, "lr": budget.lr, "epochs": budget.epochs,
                "seed": a.seed, "bf16": self.bf16, "lr_scheduler": "constant", "format": "conversational prompt/completion",
                "max_steps": a.max_steps, "data_dir": a.data_dir, "evaluation": self.eval_settings, "rl_rewriter": _portable(a.rl_rewriter),
                "budget_rule": "given by --budget" if a.budget else "sweep point with the largest kl_general of plain SFT",
            },
            "sweep": [{k: r.get(k) for k in ("lr", "epochs", "seed", "gsm8k", "arc_easy", "hellaswag", "forgetting_mean", "kl_from_base", "kl_general", "heldout_answer_nll", "target_nll")} for r in sweep],
            "seed_noise": seed_noise,
            "skipped": self.skipped,
            "wall_s_this_process": time.time() - self.started,
        }
        write_json(summary, self.results_dir / "forgetting.json")
        self.write_markdown(summary)
        return summary

    def write_markdown(self, summary: dict[str, Any]) -> None:
        methods = summary["methods"]
        lines = [f"# Forgetting benchmark ({summary['config']['model']}, GSM8K {summary['config']['train_rows']}, lr {summary['config']['lr']:g}, {summary['config']['epochs']} epoch(s))", "", markdown_table(methods), ""]
        if summary["sweep"]:
            sweep = {f"sft lr {r['lr']:g} ep {r['epochs']}": r for r in summary["sweep"]}
            lines += ["## Plain-SFT sweep (seed %d)" % summary["config"]["seed"], "", markdown_table(sweep), ""]
        if summary["seed_noise"]:
            lines += ["## Difference between two seeds of plain SFT at the chosen budget", "", "| measure | abs. difference |", "|---|---|"]
            lines += [f"| {k} | {v:.4f} |" for k, v in summary["seed_noise"].items()] + [""]
        if summary["skipped"]:
            lines += ["## Skipped", ""] + [f"- {m}: {why}" for m, why in summary["skipped"].items()] + [""]
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        (self.stage_dir / "report.md").write_text("\n".join(lines))
        plot_gain_vs_forgetting(methods, self.stage_dir / "gain_vs_forgetting.png", title="Forgetting benchmark: GSM8K SFT of SmolLM2-135M-Instruct, one budget for every method")


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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    summary = ForgettingBenchmark(args).run()
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
