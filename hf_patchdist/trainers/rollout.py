"""GRPO rollouts through the project's decode loop: a TRL ``rollout_func`` that shares each prompt's prefix.

TRL 1.16's ``GRPOTrainer`` receives each prompt ``num_generations`` (K) times in a row (its
``RepeatSampler``) and, on its default path, left-pads all of them into one ``model.generate`` call:
every prompt is prefilled K times, and every row is decoded until the slowest one ends.
:class:`DecodeLoopRollout` is a ``rollout_func`` (TRL calls it as ``rollout_func(prompts, trainer)``
with the process's repeated, still conversational prompts, and expects ``prompt_ids``,
``completion_ids`` and ``logprobs``, one entry per prompt it was given) that instead:

* renders the prompts through the chat template as TRL does, and finds the distinct ones;
* generates their completions with :class:`~hf_patchdist.generation.TransformersBackend`'s decode
  loop on the policy itself (the current adapter, so no stale weights): one prefill per distinct
  prompt, its K candidates sharing the prompt's keys and values, finished rows leaving the batch;
* ends a completion at its end-of-sequence token, at the end of its final-answer line (the gate's
  ``final_answer_end``, as the Rewriter does at Stage II) or at ``max_completion_length``;
* samples with the config's ``temperature``, ``top_p`` and ``top_k``.

``logprobs`` is ``None``, as on TRL's own ``generate`` path: TRL then computes the old
log-probabilities itself when it needs them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from ..generation import GenerationSettings, StopFunction

ROLLOUT_ENGINES = ("decode_loop", "trl")


def unsupported_sampling_options(args: Any) -> list[str]:
    """``GRPOConfig`` sampling options set to something the decode loop does not apply (empty when none)."""
    options = []
    if getattr(args, "min_p", None) is not None:
        options.append(f"min_p={args.min_p!r}")
    if getattr(args, "repetition_penalty", 1.0) not in (None, 1.0):
        options.append(f"repetition_penalty={args.repetition_penalty!r}")
    if getattr(args, "generation_kwargs", None):
        options.append(f"generation_kwargs={args.generation_kwargs!r}")
    return options


class DecodeLoopRollout:
    """TRL ``rollout_func`` generating with the decode loop, each distinct prompt prefilled once.

    Args:
        stop: Where a completion ends (the gate's ``final_answer_end``); None runs every row to its
            end-of-sequence token or the token limit, as TRL's ``generate`` does.
        batch_size: Distinct prompts per decode batch; None puts all the prompts of a call in one.

    Attributes:
        last_stats: The :class:`~hf_patchdist.generation.GenerationStats` of each backend call of the
            last rollout (one per group size; one in a training step).
    """

    def __init__(self, stop: StopFunction | None = None, *, batch_size: int | None = None) -> None:
        self.stop = stop
        self.batch_size = batch_size
        self.last_stats: list[Any] = []
        self._backend: Any = None

    def settings(self, trainer: Any, prompts: int) -> GenerationSettings:
        """The trainer's sampling settings (``GRPOTrainer`` keeps them as attributes)."""
        return GenerationSettings(
            max_new_tokens=int(trainer.max_completion_length),
            do_sample=True,
            temperature=float(trainer.temperature),
            top_p=float(trainer.top_p if trainer.top_p is not None else 1.0),
            top_k=int(trainer.top_k or 0),
            batch_size=int(self.batch_size or max(prompts, 1)),
            length_multiple=None,
        )

    def __call__(self, prompts: Sequence[Any], trainer: Any) -> dict[str, Any]:
        """Generate one completion per entry of ``prompts`` (each distinct prompt K times in TRL's order).

        Returns:
            ``{"prompt_ids", "completion_ids", "logprobs": None}``, one entry per prompt, in order.
        """
        texts = [render_prompt(trainer, prompt) for prompt in prompts]
        # Distinct prompts in order of first appearance, and each one's positions among the inputs.
        positions: dict[str, list[int]] = {}
        for index, text in enumerate(texts):
            positions.setdefault(text, []).append(index)
        # The backend gives every prompt of a call the same number of candidates: one call per group size.
        by_count: dict[int, list[str]] = {}
        for text, where in positions.items():
            by_count.setdefault(len(where), []).append(text)

        tokenizer = trainer.processing_class
        completion_ids: list[list[int] | None] = [None] * len(texts)
        prompt_ids: list[list[int] | None] = [None] * len(texts)
        self.last_stats = []
        with self._generation_model(trainer) as model:
            backend = self._get_backend(model, tokenizer)
            for count, distinct in by_count.items():
                backend.generate(distinct, num_candidates=count, settings=self.settings(trainer, len(distinct)), stop=self.stop)
                stats = backend.last_stats
                self.last_stats.append(stats)
                encoded = backend.encode(distinct)
                for text, ids, candidates in zip(distinct, encoded, stats.token_ids):
                    for index, tokens in zip(positions[text], candidates):
                        prompt_ids[index] = list(ids)
                        completion_ids[index] = list(tokens)
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    def _get_backend(self, model: Any, tokenizer: Any) -> Any:
        from ..generation import TransformersBackend

        # One backend across steps keeps its token -> newline memo; the model is the policy of this step.
        if self._backend is None:
            self._backend = TransformersBackend(model, tokenizer)
        self._backend.model = model
        self._backend.tokenizer = tokenizer
        return self._backend

    @staticmethod
    @contextlib.contextmanager
    def _generation_model(trainer: Any):
        """The policy as TRL's ``generate`` path sees it: unwrapped, gradient checkpointing off, no grad."""
        import torch
        from trl.models import unwrap_model_for_generation

        with contextlib.ExitStack() as stack:
            model = stack.enter_context(
                unwrap_model_for_generation(
                    trainer.model_wrapped,
                    trainer.accelerator,
                    gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                    gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
                )
            )
            stack.enter_context(torch.no_grad())
            distributed = getattr(trainer, "_dist", None)  # FSDP: gather the full parameters, as TRL does
            if distributed is not None:
                stack.enter_context(distributed.summon_full_params(trainer.model_wrapped, recurse=False))
            yield model


def render_prompt(trainer: Any, prompt: Any) -> str:
    """A prompt as the text TRL would tokenize: conversational prompts through the chat template."""
    if isinstance(prompt, str):
        return prompt
    return trainer.processing_class.apply_chat_template(
        prompt,
        chat_template=getattr(trainer, "chat_template", None),
        add_generation_prompt=True,
        tokenize=False,
        **(getattr(trainer, "chat_template_kwargs", None) or {}),
    )
