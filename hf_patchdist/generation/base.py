"""The one interface every generation backend implements, and the settings it takes.

The Rewriter only needs "complete these prompts, n candidates each, stop at the end of the final
answer line". Backends: :class:`~hf_patchdist.generation.transformers_backend.TransformersBackend`
(``model.generate``, the default), :class:`~hf_patchdist.generation.vllm_backend.VLLMBackend` (vLLM
when installed), :class:`~hf_patchdist.generation.ctranslate2_backend.CTranslate2Backend` (CTranslate2
when installed; these three are also selectable by name, :mod:`~hf_patchdist.generation.registry`)
and :class:`~hf_patchdist.generation.static_backend.StaticBackend` (given texts, so tests can drive the
whole Generate-Verify-Fallback path deterministically). This module imports
neither torch nor transformers.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
import inspect
import math
from dataclasses import asdict, dataclass
from typing import Any

StopFunction = Callable[[str], "int | None"]
"""Given the text generated so far, the index where it should end (after the final-answer line), or None."""


@dataclass
class GenerationSettings:
    """How candidates are generated.

    Attributes:
        max_new_tokens: Token limit per candidate; a candidate that hits it is marked truncated.
            With ``length_multiple`` set it is the cap of the per-example limit below.
        do_sample: Sample instead of greedy decoding (needed for several distinct candidates).
        temperature: Sampling temperature.
        top_p: Nucleus sampling threshold.
        top_k: Sample among the ``top_k`` most likely tokens only; 0 keeps every token (as TRL's
            ``GRPOConfig.top_k``).
        batch_size: Prompts per generation batch.
        length_multiple: The Rewriter's per-example token limit follows the expert answer:
            ``min(max_new_tokens, ceil(length_multiple * expert_tokens + length_margin))``, where
            ``expert_tokens`` counts the expert answer as shown in the prompt. ``None`` gives every
            example ``max_new_tokens``. A rewrite is a re-derivation of the expert answer: on the 93
            accepted rewrites of GSM8K ``train[800:1000]`` (64 of the trained RL rewriter, 29 prompted;
            ``benchmarks/results/rewriter_vs_prompted_examples.json``) the rewrite was 1.0x the
            expert answer's tokens at the median, 1.41x at the 90th percentile and 1.72x at most
            (79 tokens for a 46-token answer); 1.5x + 32 keeps every one of them with at least 22
            tokens to spare, while a row that rambles without a final line stops well before 320.
        length_margin: Tokens added to the scaled expert length (covers short answers).
    """

    max_new_tokens: int = 320
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    batch_size: int = 16
    length_multiple: float | None = 1.5
    length_margin: int = 32

    def to_dict(self) -> dict[str, Any]:
        settings = asdict(self)
        if not settings["top_k"]:
            # Left out at its default, so that configs (and patch-cache fingerprints) of rewriters saved
            # before the field existed stay the same.
            del settings["top_k"]
        return settings

    def token_limit(self, reference_tokens: int | None) -> int:
        """The new-token limit of an example whose expert answer has ``reference_tokens`` tokens.

        Example:
            ```python
            >>> GenerationSettings().token_limit(60)  # min(320, 1.5 * 60 + 32)
            122
            >>> GenerationSettings(length_multiple=None).token_limit(60)
            320
            ```
        """
        if self.length_multiple is None or reference_tokens is None:
            return int(self.max_new_tokens)
        limit = math.ceil(self.length_multiple * reference_tokens + self.length_margin)
        return max(1, min(int(self.max_new_tokens), limit))


@dataclass
class GeneratedText:
    """One generated candidate.

    Attributes:
        text: The completion (without the prompt and special tokens), cut after the final-answer line.
        truncated: Whether generation hit ``max_new_tokens`` before ending on its own.
    """

    text: str
    truncated: bool = False


class GenerationBackend(abc.ABC):
    """Interface of a generation backend."""

    @abc.abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        *,
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None = None,
        max_new_tokens: Sequence[int] | None = None,
    ) -> list[list[GeneratedText]]:
        """Return ``num_candidates`` completions for each prompt (prompts already chat-rendered).

        ``max_new_tokens``, when given, holds one token limit per prompt that replaces
        ``settings.max_new_tokens`` (a backend written before this argument existed is still
        accepted by the Rewriter: see :func:`accepts_token_limits`).
        """

    def fingerprint(self) -> str:
        """What, besides the Rewriter's own config and model, decides this backend's outputs (for the patch cache).

        The class name by default; a backend that loads its own weights (vLLM with an adapter) returns
        their identity and its settings, so that two of them never share a cache entry.
        """
        return type(self).__qualname__


def length_groups(
    lengths: Sequence[int], *, max_rows: int | None = None, max_padding: float = 0.1, max_tokens: int = 8192
) -> list[list[int]]:
    """Indices of sequences grouped for batched forward passes with little padding.

    The sequences are taken by decreasing length (ties in index order); a group closes when adding
    the next one would exceed ``max_rows`` rows, add padding beyond ``max_padding`` of the group's
    real tokens, or make the padded group longer than ``max_tokens`` tokens (a single longer
    sequence still forms its own group).

    Example:
        ```python
        >>> length_groups([5, 100, 98, 6, 97])
        [[1, 2, 4], [3, 0]]
        ```
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    real = 0
    for index in order:
        if groups:
            group = groups[-1]
            padded = lengths[group[0]] * (len(group) + 1)
            if (
                (max_rows is None or len(group) < max_rows)
                and padded <= (real + lengths[index]) * (1 + max_padding)
                and padded <= max_tokens
            ):
                group.append(index)
                real += lengths[index]
                continue
        groups.append([index])
        real = lengths[index]
    return groups


def resolve_token_limits(count: int, settings: GenerationSettings, max_new_tokens: Sequence[int] | None) -> list[int]:
    """The token limit of each of ``count`` prompts: ``max_new_tokens`` when given (checked), else the settings'."""
    if max_new_tokens is None:
        return [int(settings.max_new_tokens)] * count
    limits = [int(limit) for limit in max_new_tokens]
    if len(limits) != count:
        raise ValueError(f"max_new_tokens has {len(limits)} limits for {count} prompts")
    if any(limit < 1 for limit in limits):
        raise ValueError(f"Every token limit must be at least 1, got {min(limits)}")
    return limits


def accepts_token_limits(backend: GenerationBackend) -> bool:
    """Whether ``backend.generate`` takes per-prompt limits (``max_new_tokens=``)."""
    try:
        parameters = inspect.signature(backend.generate).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "max_new_tokens" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)

