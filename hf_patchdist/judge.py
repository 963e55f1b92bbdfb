"""LLM judge of a rewrite's reasoning: the paper's reasoning check, as an extra to the deterministic gate.

The judge reads the question, the reference solution and the candidate, and is asked whether the
candidate's reasoning is valid; its verdict is the next-token probability of "YES" against "NO".
By default the judge is pi_0 itself (the trainer's backbone with the adapter disabled); a separate
judge model can be named. A small model is a weak judge, so the judge only ever *adds* to the
deterministic checks of :mod:`hf_patchdist.verifiers`, it never replaces them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .scoring import adapter_disabled, eval_mode


DEFAULT_JUDGE_TEMPLATE = (
    "Question:\n{question}\n\nReference solution:\n{reference}\n\nCandidate solution:\n{candidate}\n\n"
    "Is the candidate's reasoning correct, with every calculation right, and does it reach the same final "
    "answer as the reference? Answer YES or NO."
)


class LLMJudge:
    """YES/NO judge of a candidate's reasoning from next-token probabilities.

    Args:
        model: None to judge with the model given to :meth:`bind` (pi_0, adapter disabled), or a
            model alias / Hub id / folder to load a separate judge.
        threshold: Minimum ``p(YES) / (p(YES) + p(NO))`` to pass.
        template: Judge prompt with ``{question}``, ``{reference}`` and ``{candidate}``.
        batch_size: Candidates per forward pass.

    Example:
        ```python
        judge = LLMJudge(threshold=0.5)
        judge.bind(model, tokenizer)
        judge.probabilities(["What is 2+3?"], ["2+3=5\\n#### 5"], ["Two plus three is 2+3=5.\\n#### 5"])
        ```
    """

    def __init__(self, model: str | None = None, *, threshold: float = 0.5, template: str = DEFAULT_JUDGE_TEMPLATE, batch_size: int = 8) -> None:
        self.model_name = model
        self.threshold = threshold
        self.template = template
        self.batch_size = batch_size
        self.model: Any = None
        self.tokenizer: Any = None
        if model is not None:
            from .models import load_model_and_tokenizer

            self.model, self.tokenizer = load_model_and_tokenizer(model)

    def bind(self, model: Any, tokenizer: Any) -> None:
        """Judge with this model (pi_0: its adapter is disabled while judging) unless a judge was named."""
        if self.model is None:
            self.model, self.tokenizer = model, tokenizer

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "threshold": self.threshold, "template": self.template}

    def _answer_token_ids(self) -> tuple[list[int], list[int]]:
        def ids(words: Sequence[str]) -> list[int]:
            found = {self.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words}
            return sorted(found)

        return ids(["YES", " YES", "Yes", " Yes"]), ids(["NO", " NO", "No", " No"])

    @torch.no_grad()
    def probabilities(self, questions: Sequence[str], references: Sequence[str], candidates: Sequence[str]) -> list[float]:
        """``p(YES) / (p(YES) + p(NO))`` for each candidate."""
        if self.model is None:
            raise RuntimeError("LLMJudge has no model: name one, or call bind(model, tokenizer) first.")
        yes_ids, no_ids = self._answer_token_ids()
        prompts = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": self.template.format(question=q, reference=r, candidate=c)}],
                tokenize=False,
                add_generation_prompt=True,
            )
            for q, r, c in zip(questions, references, candidates)
        ]
        device = next(self.model.parameters()).device
        padding_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        result: list[float] = []
        try:
            with eval_mode(self.model), adapter_disabled(self.model):
                for start in range(0, len(prompts), self.batch_size):
                    batch = self.tokenizer(prompts[start : start + self.batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                    position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                    logits = self.model(**batch, position_ids=position_ids, logits_to_keep=1).logits[:, -1].float()
                    probs = torch.softmax(logits, dim=-1)
                    yes = probs[:, yes_ids].sum(-1)
                    no = probs[:, no_ids].sum(-1)
                    result += (yes / (yes + no).clamp(min=1e-12)).tolist()
        finally:
            self.tokenizer.padding_side = padding_side
        return result

    def __call__(self, questions: Sequence[str], references: Sequence[str], candidates: Sequence[str]) -> list[bool]:
        """Whether each candidate passes the judge."""
        return [p >= self.threshold for p in self.probabilities(questions, references, candidates)]
