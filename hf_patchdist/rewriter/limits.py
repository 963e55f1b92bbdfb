"""Length limits of Stage II: which rows are too long for the model, and each row's token limit.

A row is ``too_long`` (its own fallback reason, not ``truncated``) in two cases:

* **before generating**: the room the model's context leaves after the rewriting prompt
  (``context - prompt tokens``) is smaller than the expert answer. A rewrite re-derives the expert
  answer and is about as long (1.0x its tokens at the median on GSM8K, see
  :class:`~hf_patchdist.generation.GenerationSettings`), so it would not fit: the row is not generated.
  Otherwise the row's token limit is cut to the room left, so generation never runs past the context.
* **after generating**: the candidates failed as ``truncated`` while the expert answer alone is at
  least as long as the row's token limit (``max_new_tokens`` below the expert answer, or the room
  left): the limit, not the candidate, is what cut them. A candidate truncated below a limit longer
  than the expert answer rambled: that stays ``truncated``.

The context is ``config.max_position_embeddings`` (:func:`~hf_patchdist.models.model_context_length`);
without one only the second case applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..generation.base import GenerationSettings

TOO_LONG = "too_long"


def plan_token_limits(
    prompt_tokens: Sequence[int],
    expert_tokens: Sequence[int],
    settings: GenerationSettings,
    context: int | None,
) -> tuple[list[int], list[bool]]:
    """Each row's new-token limit and whether the row is too long to generate at all.

    Args:
        prompt_tokens: Tokens of each row's rendered rewriting prompt.
        expert_tokens: Tokens of each row's expert answer (as shown in the prompt).
        settings: The generation settings (their :meth:`~GenerationSettings.token_limit` rule).
        context: The model's context length, or None when unknown.

    Returns:
        ``(limits, too_long)``: the limit is ``settings.token_limit(expert)`` cut to the room the context
        leaves; ``too_long`` is True where that room is smaller than the expert answer.

    Example:
        ```python
        >>> plan_token_limits([100, 940, 1000], [60, 60, 60], GenerationSettings(), 1024)  # min(320, 1.5 * 60 + 32) = 122
        ([122, 84, 24], [False, False, True])

        ```
    """
    limits = [settings.token_limit(count) for count in expert_tokens]
    too_long = [False] * len(limits)
    if context is None:
        return limits, too_long
    for index, (prompt, expert) in enumerate(zip(prompt_tokens, expert_tokens)):
        room = max(int(context) - int(prompt), 0)
        too_long[index] = room < max(int(expert), 1)
        limits[index] = max(1, min(limits[index], room))
    return limits, too_long


def limit_was_too_short(reason: str | None, expert_tokens: int, limit: int) -> bool:
    """Whether a row whose candidates failed for ``reason`` failed because its limit could not hold the answer."""
    return reason == "truncated" and expert_tokens >= limit


@dataclass
class RowLimits:
    """The length plan of a batch of rows to generate (see :func:`plan_rows`).

    Attributes:
        limits: Each row's token limit, as generation applies it.
        expert_tokens: Each row's expert answer length in tokens (as shown in the prompt).
        too_long: Rows not to generate.
        per_row: Whether ``limits`` go to the backend (else every row gets ``settings.max_new_tokens``).
    """

    limits: list[int]
    expert_tokens: list[int]
    too_long: list[bool]
    per_row: bool

    def backend_limits(self) -> dict[str, Any]:
        """The ``max_new_tokens=`` keyword of the backend call for the rows that are generated (or none)."""
        if not self.per_row:
            return {}
        return {"max_new_tokens": [limit for limit, long in zip(self.limits, self.too_long) if not long]}


def plan_rows(
    tokenizer: Any,
    prompts: Sequence[str],
    shown_references: Sequence[str],
    settings: GenerationSettings,
    context: int | None,
    backend_takes_limits: bool,
) -> RowLimits:
    """:func:`plan_token_limits` for rendered prompts and expert answers, as the Rewriter generates them.

    Per-row limits go to the backend when it takes them and either the settings scale them with the expert
    answer or the context cuts one; otherwise every row gets ``settings.max_new_tokens``, and only
    ``too_long`` rows are held back.
    """
    prompt_tokens = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]] if prompts else []
    shown = list(shown_references)
    expert_tokens = [len(ids) for ids in tokenizer(shown, add_special_tokens=False)["input_ids"]] if shown else []
    limits, too_long = plan_token_limits(prompt_tokens, expert_tokens, settings, context)
    per_row = backend_takes_limits and (
        settings.length_multiple is not None or any(limit < settings.max_new_tokens for limit in limits)
    )
    if not per_row:
        limits = [int(settings.max_new_tokens)] * len(limits)
    return RowLimits(limits, expert_tokens, too_long, per_row)
