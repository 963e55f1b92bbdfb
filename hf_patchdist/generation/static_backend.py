"""A backend that returns given texts: deterministic tests of Generate-Verify-Fallback."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .base import GeneratedText, GenerationBackend, GenerationSettings, StopFunction


class StaticBackend(GenerationBackend):
    """Return given texts instead of generating: deterministic tests of Generate-Verify-Fallback.

    Args:
        responses: Either a function ``prompt -> str | list[str]`` or a sequence of texts used in
            turn (cycling). A text ending in the marker ``"<truncated>"`` is returned as truncated.

    Example:
        ```python
        backend = StaticBackend(lambda prompt: "6*12=72 so the answer follows.\\n#### 72")
        ```
    """

    TRUNCATED_MARKER = "<truncated>"

    def __init__(self, responses: Callable[[str], str | Sequence[str]] | Sequence[str]) -> None:
        self.responses = responses
        self.calls = 0
        self.last_max_new_tokens: list[int] | None = None  # the per-prompt limits of the last call
        self._position = 0

    def _next(self, prompt: str) -> list[str]:
        if callable(self.responses):
            value = self.responses(prompt)
            return [value] if isinstance(value, str) else list(value)
        value = self.responses[self._position % len(self.responses)]
        self._position += 1
        return [value]

    def generate(
        self,
        prompts: Sequence[str],
        *,
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None = None,
        max_new_tokens: Sequence[int] | None = None,
    ) -> list[list[GeneratedText]]:
        self.calls += 1
        self.last_max_new_tokens = list(max_new_tokens) if max_new_tokens is not None else None
        results = []
        for prompt in prompts:
            texts: list[str] = []
            while len(texts) < num_candidates:
                texts += self._next(prompt)
            candidates = []
            for text in texts[:num_candidates]:
                truncated = text.endswith(self.TRUNCATED_MARKER)
                candidates.append(GeneratedText(text=text.removesuffix(self.TRUNCATED_MARKER), truncated=truncated))
            results.append(candidates)
        return results
