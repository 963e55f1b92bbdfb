"""Sizes and settings of an evaluation (:class:`EvaluationConfig`), shared by every step of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EvaluationConfig:
    """Sizes and settings of an evaluation.

    Attributes:
        limit: Items per task: an int for every task, a mapping task -> int, or None for all.
        batch_size: Sequences per forward pass (multiple choice, NLL, KL).
        generation_batch_size: Prompts per generation batch.
        max_new_tokens: Token limit of a downstream (math) answer.
        kl_prompts: Prompts for each KL measure (new task, general domain).
        kl_tokens: Tokens sampled from pi_0 per KL prompt.
        seed: Seed of the pi_0 samples.
        show_progress: Progress bars.
    """

    limit: int | dict[str, int] | None = None
    batch_size: int = 16
    generation_batch_size: int = 16
    max_new_tokens: int = 256
    kl_prompts: int = 40
    kl_tokens: int = 64
    seed: int = 0
    show_progress: bool = True

    def limit_for(self, task: str) -> int | None:
        if isinstance(self.limit, Mapping):
            return self.limit.get(task)
        return self.limit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
