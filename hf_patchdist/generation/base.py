"""The one interface every generation backend implements, and the settings it takes.

The Rewriter only needs "complete these prompts, n candidates each, stop at the end of the final
answer line". Backends: :class:`~hf_patchdist.generation.transformers_backend.TransformersBackend`
(``model.generate``, the default), :class:`~hf_patchdist.generation.vllm_backend.VLLMBackend` (vLLM
when installed) and :class:`~hf_patchdist.generation.static_backend.StaticBackend` (given texts, so
tests can drive the whole Generate-Verify-Fallback path deterministically). This module imports
neither torch nor transformers.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

StopFunction = Callable[[str], "int | None"]
"""Given the text generated so far, the index where it should end (after the final-answer line), or None."""


@dataclass
class GenerationSettings:
    """How candidates are generated.

    Attributes:
        max_new_tokens: Token limit per candidate; a candidate that hits it is marked truncated.
        do_sample: Sample instead of greedy decoding (needed for several distinct candidates).
        temperature: Sampling temperature.
        top_p: Nucleus sampling threshold.
        batch_size: Prompts per ``generate`` call.
    """

    max_new_tokens: int = 320
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    ) -> list[list[GeneratedText]]:
        """Return ``num_candidates`` completions for each prompt (prompts already chat-rendered)."""

