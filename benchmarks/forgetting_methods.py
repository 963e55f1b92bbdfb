"""What the methods of ``benchmarks/forgetting.py`` train on, and the one method that is more than an SFT run:
on-policy self-distillation (SDFT, Shenfeld et al., arXiv 2601.19897) through TRL 1.16's
``trl.experimental.sdft.SDFTTrainer``.

* :func:`sft_dataset`: GSM8K rows as conversational prompt/completion (``sft``, ``dft`` and the patches), or with
  the ``<<48/2=24>>`` calculator annotations stripped from the answers (``sft_stripped``).
* :func:`sdft_dataset`: the ``prompt`` (the question as the user's turn) and ``privileged_context`` (the expert
  answer, shown to the teacher only) columns SDFT reads.
* :class:`SDFTOptions` and :func:`sdft_config_kwargs`: the SDFT settings and how its steps map onto SFT's.
* :class:`SampleNLLRecorder`: the pi_0 NLL of SDFT's on-policy samples, the counterpart of the other methods'
  target NLL, scored through the trainer's ``on_self_distillation_batch_prepared`` callback.

**Step mapping.** SFT trains on ``batch_size`` (8) distinct rows per optimizer step. SDFT repeats each prompt
``num_generations`` times inside a generation batch of ``generation_batch_size`` samples, so one step covers
``generation_batch_size / num_generations`` distinct rows. With ``num_generations=1`` (also the paper's
reference code), ``per_device_train_batch_size=batch_size``, ``gradient_accumulation_steps=1`` and so
``generation_batch_size=batch_size`` and ``steps_per_generation=1``, one SDFT step samples one answer for each
of 8 distinct rows and takes one optimizer step on them: the same rows per step, steps per epoch, epochs,
learning rate and schedule as SFT, i.e. the same optimizer budget in examples seen. Each step also generates
(with plain ``model.generate``: the decode loop and the other generation speed-ups of
``hf_patchdist.generation`` do not reach SDFT, so its wall time includes a slower generator than the patches
use) and runs a teacher forward.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from hf_patchdist.verifiers.text_checks import strip_calculator_annotations

SDFT_TEACHER_TEMPLATE = (
    "{prompt}\n\n"
    "This is an example for a response to the question:\n"
    "{privileged_context}\n\n"
    "Now answer with a response of your own, including the thinking process."
)
"""The paper's teacher prompt (the ``teacher_prompt`` template of its reference code, github.com/idanshen/Self-Distillation
``main.py``; the blank lines it puts before and after the whole text are left out). TRL's default,
``"{prompt}\\n\\n{privileged_context}"``, shows the demonstration without saying what it is."""

SDFT_GENERATOR_NOTE = (
    "SDFT samples with plain transformers model.generate (TRL's path without vLLM): the decode loop, shared-prefix "
    "KV cache and other generation speed-ups of hf_patchdist.generation, which the patch methods' rewriting uses, do "
    "not reach it"
)


def sft_dataset(rows: Sequence[Mapping[str, str]], *, strip_annotations: bool = False):
    """GSM8K rows as conversational prompt/completion: the question as the user's turn, the answer as the assistant's.

    Args:
        rows: Rows with ``question`` and ``answer``.
        strip_annotations: Remove GSM8K's ``<<48/2=24>>`` calculator annotations from the answers (``sft_stripped``).
    """
    from datasets import Dataset

    def answer(row: Mapping[str, str]) -> str:
        return strip_calculator_annotations(row["answer"]) if strip_annotations else row["answer"]

    return Dataset.from_list(
        [{"prompt": [{"role": "user", "content": r["question"]}], "completion": [{"role": "assistant", "content": answer(r)}]} for r in rows]
    )


def sdft_dataset(rows: Sequence[Mapping[str, str]], *, strip_demonstration: bool = False):
    """The ``prompt`` / ``privileged_context`` columns of ``SDFTTrainer``.

    ``prompt`` is the conversation the student answers (it must end with a user turn: TRL puts the teacher
    template into that turn); ``privileged_context`` is the expert answer, seen by the teacher only.

    Args:
        rows: Rows with ``question`` and ``answer``.
        strip_demonstration: Show the teacher the answer without GSM8K's calculator annotations.
    """
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": r["question"]}],
                "privileged_context": strip_calculator_annotations(r["answer"]) if strip_demonstration else r["answer"],
            }
            for r in rows
        ]
    )


@dataclass(frozen=True)
class SDFTOptions:
    """The SDFT settings of the benchmark (everything else is the SFT runs' budget).

    Attributes:
        teacher: ``teacher_model_kind``: ``"base"`` (pi_0, frozen; the default here, and TRL's) or ``"ema"``
            (the paper's reference code: an exponential moving average of the student, rate ``ema_rate`` each step).
        ema_rate: ``teacher_update_rate`` when ``teacher="ema"`` (0.01 in the reference code).
        num_generations: Samples per prompt (1 in the reference code; see the module docstring for the step mapping).
        max_completion_length: Token limit of a sample (256, the GSM8K evaluation's answer limit; the reference
            code's 1024 does not fit a CPU budget and GSM8K answers are far shorter).
        temperature: Sampling temperature (1.0: the paper's and TRL's default, truly on-policy).
        num_loss_tokens_to_skip: First sample tokens left out of the loss (3 in the reference code: they carry
            artifacts of the teacher prompt).
        demonstration: ``"raw"`` (the expert answer as SFT sees it) or ``"stripped"`` (without annotations).
        teacher_prompt_template: The teacher prompt (:data:`SDFT_TEACHER_TEMPLATE`).
        distillation: TRL's defaults, kept: top-k logit distillation (k=100), alpha 0.5, importance-sampling clip 2.0.
    """

    teacher: str = "base"
    ema_rate: float = 0.01
    num_generations: int = 1
    max_completion_length: int = 256
    temperature: float = 1.0
    num_loss_tokens_to_skip: int = 3
    demonstration: str = "raw"
    teacher_prompt_template: str = SDFT_TEACHER_TEMPLATE
    distillation: tuple[tuple[str, Any], ...] = (
        ("distillation_mode", "topk_logits"), ("distillation_topk", 100), ("distillation_alpha", 0.5), ("distillation_is_clip", 2.0),
    )

    def __post_init__(self) -> None:
        if self.teacher not in ("base", "ema"):
            raise ValueError(f"SDFT teacher must be 'base' or 'ema', got {self.teacher!r}")
        if self.demonstration not in ("raw", "stripped"):
            raise ValueError(f"SDFT demonstration must be 'raw' or 'stripped', got {self.demonstration!r}")

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["distillation"] = dict(self.distillation)
        if self.teacher != "ema":
            record.pop("ema_rate")
        return record


# Keys of the SFT runs' config that SDFTConfig has no field for.
_SFT_ONLY_KEYS = ("loss_type", "max_length")


def sdft_config_kwargs(sft_kwargs: Mapping[str, Any], options: SDFTOptions) -> dict[str, Any]:
    """``SDFTConfig`` keyword arguments: the SFT runs' budget (batch, learning rate, schedule, epochs, precision,
    gradient checkpointing, seed, checkpoints) plus the SDFT settings, mapped so that one step covers
    ``per_device_train_batch_size`` distinct rows, as one SFT step does.

    Raises:
        ValueError: When the mapping would not hold (gradient accumulation, or a batch ``num_generations`` does not divide).
    """
    batch = int(sft_kwargs["per_device_train_batch_size"])
    if int(sft_kwargs.get("gradient_accumulation_steps", 1)) != 1:
        raise ValueError("The SDFT step mapping assumes gradient_accumulation_steps=1, as the SFT runs use.")
    if batch % options.num_generations:
        raise ValueError(f"batch size {batch} is not divisible by num_generations={options.num_generations}")
    kwargs = {k: v for k, v in sft_kwargs.items() if k not in _SFT_ONLY_KEYS}
    kwargs.update(
        # One generation batch of `batch` samples per optimizer step (steps_per_generation=1); with num_generations=1
        # they are `batch` distinct rows, as in one SFT step.
        generation_batch_size=batch,
        num_generations=options.num_generations,
        num_iterations=1,
        max_completion_length=options.max_completion_length,
        max_prompt_length=1024,  # the teacher prompt (question + demonstration) must not be cut from the left
        temperature=options.temperature,
        num_loss_tokens_to_skip=options.num_loss_tokens_to_skip,
        teacher_model_kind=options.teacher,
        teacher_prompt_template=options.teacher_prompt_template,
        remove_unused_columns=False,
        **dict(options.distillation),
    )
    if options.teacher == "ema":
        kwargs.update(teacher_update_rate=options.ema_rate, teacher_sync_steps=1)
    return kwargs


def distinct_rows_per_step(config: Any) -> int:
    """Distinct training rows one optimizer step of an ``SDFTConfig`` covers (single process)."""
    return config.generation_batch_size // config.num_generations // config.steps_per_generation


class SampleNLLRecorder(TrainerCallback):
    """Scores SDFT's on-policy samples under pi_0 as the trainer prepares each batch, and keeps them on disk.

    The pi_0 NLL of a sample is :class:`~hf_patchdist.scoring.QAScorer`'s: the sample's text (special tokens
    dropped) as the answer to the rendered prompt, the way the other methods' training targets are scored. Each
    batch is appended to ``log_path`` (JSON lines, with the step it was sampled at), so a run resumed from a
    checkpoint keeps the batches before the interruption; a step sampled twice (the interrupted one) counts once,
    with its last samples.

    Args:
        base_model: pi_0 (the untrained model; never the student being trained).
        tokenizer: Its tokenizer.
        log_path: The JSON-lines file.
        batch_size: Sequences per scoring forward pass.
    """

    def __init__(self, base_model: Any, tokenizer: Any, log_path: str | Path, *, batch_size: int = 16) -> None:
        from hf_patchdist.scoring import QAScorer

        self.scorer = QAScorer(base_model, tokenizer, batch_size=batch_size)
        self.tokenizer = tokenizer
        self.log_path = Path(log_path)

    def decode(self, prompt_ids: Any, completion_ids: Any) -> tuple[list[str], list[str]]:
        """Prompt texts (left padding removed, special tokens kept: they are the chat template) and sample texts."""
        pad = self.tokenizer.pad_token_id
        prompts, samples = [], []
        for prompt_row, completion_row in zip(prompt_ids.tolist(), completion_ids.tolist()):
            start = next((i for i, token in enumerate(prompt_row) if token != pad), len(prompt_row))
            prompts.append(self.tokenizer.decode(prompt_row[start:], skip_special_tokens=False))
            samples.append(self.tokenizer.decode(completion_row, skip_special_tokens=True))
        return prompts, samples

    def on_self_distillation_batch_prepared(self, args, state, control, prompt_ids=None, completion_ids=None, **kwargs):  # noqa: ANN001
        if prompt_ids is None or completion_ids is None:
            return
        prompts, samples = self.decode(prompt_ids, completion_ids)
        scores = self.scorer.score(prompts, samples)
        entry = {"step": state.global_step, "nll": scores.nll, "tokens": scores.num_tokens, "prompts": prompts, "samples": samples}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as handle:
            handle.write(json.dumps(entry, allow_nan=True) + "\n")

    def entries(self) -> list[dict[str, Any]]:
        """The logged batches, the last one of each step only, in step order."""
        if not self.log_path.is_file():
            return []
        by_step: dict[int, dict[str, Any]] = {}
        for line in self.log_path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                by_step[entry["step"]] = entry
        return [by_step[step] for step in sorted(by_step)]

    def summary(self, *, examples: int = 5) -> dict[str, Any]:
        """Mean pi_0 NLL of the samples (NaN ones, e.g. empty samples, left out and counted), and a few samples to read."""
        entries = self.entries()
        values = [v for e in entries for v in e["nll"]]
        finite = [v for v in values if v is not None and not math.isnan(v)]
        pairs = [(p, s, v) for e in entries for p, s, v in zip(e["prompts"], e["samples"], e["nll"])]
        return {
            "sample_nll": sum(finite) / len(finite) if finite else None,
            "samples_scored": len(finite),
            "samples_unscored": len(values) - len(finite),
            "mean_sample_tokens": sum(t for e in entries for t in e["tokens"]) / len(values) if values else None,
            "examples": [{"prompt_tail": p[-160:], "sample": s, "nll": v} for p, s, v in pairs[:examples]],
        }
