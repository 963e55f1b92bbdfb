"""Scoring under pi_0: one batched forward pass gives each answer's NLL under QA(q) and an embedding.

``QA(q)`` is the question rendered as a plain user turn through the model's own chat template (what
the model sees when a user simply asks), not the rewriting prompt. The NLL is length-normalised
over the answer's tokens; the embedding is the mean of the last hidden state over the same tokens.
When the model carries a PEFT adapter, scoring runs with the adapter disabled, so the policy and
pi_0 share one backbone in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@contextlib.contextmanager
def adapter_disabled(model: Any) -> Iterator[None]:
    """Run the base model pi_0: the PEFT adapter is switched off inside the block (no-op without one)."""
    disable = getattr(model, "disable_adapter", None)
    if disable is not None and getattr(model, "peft_config", None):
        with disable():
            yield
    else:
        yield


def render_qa_prompt(
    tokenizer: Any,
    question: str,
    context: Sequence[dict[str, Any]] | None = None,
    qa_template: str | None = None,
) -> str:
    """Render QA(q): through the chat template by default, or ``qa_template.format(question=...)``.

    A ``qa_template`` such as ``"Problem:\\n{question}\\n\\nAnswer:\\n"`` reproduces the authors' plain
    prefix. Without a chat template on the tokenizer the question is followed by a newline.
    """
    if qa_template is not None:
        return qa_template.format(question=question)
    messages = [*(context or []), {"role": "user", "content": question}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n".join(str(m.get("content", "")) for m in messages) + "\n"


@dataclass
class ScoreOutput:
    """Result of :meth:`QAScorer.score`.

    Attributes:
        nll: Length-normalised negative log-likelihood of each answer under pi_0 given its prompt.
        num_tokens: Number of answer tokens scored.
        embeddings: ``(n, hidden)`` float32 mean-pooled last hidden states of the answer tokens.
    """

    nll: list[float]
    num_tokens: list[int]
    embeddings: torch.Tensor


class QAScorer:
    """Score answers under the frozen base model pi_0, batched.

    Args:
        model: A causal LM (optionally a ``peft.PeftModel``; its adapter is disabled while scoring).
        tokenizer: Its tokenizer.
        batch_size: Answers per forward pass.
        max_answer_tokens: Answers are cut to this many tokens before scoring (None: no limit).

    Example:
        ```python
        scorer = QAScorer(model, tokenizer)
        prompt = render_qa_prompt(tokenizer, "What is 2+3?")
        out = scorer.score([prompt, prompt], ["2+3=5\\n#### 5", "Five."])
        out.nll, out.embeddings.shape
        ```
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 16, max_answer_tokens: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_answer_tokens = max_answer_tokens

    def _encode(self, prompt: str, answer: str) -> tuple[list[int], int]:
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if self.max_answer_tokens is not None:
            answer_ids = answer_ids[: self.max_answer_tokens]
        return prompt_ids + answer_ids, len(answer_ids)

    @torch.no_grad()
    def score(self, prompts: Sequence[str], answers: Sequence[str]) -> ScoreOutput:
        """NLL and embedding of each ``answers[i]`` as a continuation of ``prompts[i]``.

        An empty answer gets NLL ``nan`` and a zero embedding.
        """
        if len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
        nll: list[float] = []
        counts: list[int] = []
        embeddings: list[torch.Tensor] = []
        hidden_size = None
        with adapter_disabled(self.model):
            for start in range(0, len(prompts), self.batch_size):
                batch = [self._encode(p, a) for p, a in zip(prompts[start : start + self.batch_size], answers[start : start + self.batch_size])]
                b_nll, b_counts, b_emb = self._score_batch(batch)
                nll += b_nll
                counts += b_counts
                embeddings.append(b_emb)
                hidden_size = b_emb.shape[-1]
        if not embeddings:
            hidden_size = int(getattr(self.model.config, "hidden_size", 0))
            return ScoreOutput([], [], torch.zeros(0, hidden_size))
        return ScoreOutput(nll, counts, torch.cat(embeddings).view(-1, hidden_size))

    def _score_batch(self, batch: list[tuple[list[int], int]]) -> tuple[list[float], list[int], torch.Tensor]:
        device = next(self.model.parameters()).device
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        length = max(len(ids) for ids, _ in batch)
        # Left padding puts every answer at the end of the row, so the logits of the last
        # (longest answer + 1) positions cover all answer tokens: the vocabulary projection
        # never runs over prompt tokens. Explicit position ids keep the numbers independent of
        # the padding (and so of the batch composition).
        input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), length), dtype=torch.long)
        for row, (ids, _) in enumerate(batch):
            input_ids[row, length - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, length - len(ids) :] = 1
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        keep = max(max(n for _, n in batch), 1) + 1
        keep = min(keep, length)
        output = self.model(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            position_ids=position_ids.to(device),
            output_hidden_states=True,
            logits_to_keep=keep,
            use_cache=False,
        )
        logits = output.logits[:, -keep:, :]
        hidden = output.hidden_states[-1]
        nll: list[float] = []
        counts: list[int] = []
        embeddings = torch.zeros(len(batch), hidden.shape[-1], dtype=torch.float32)
        for row, (_, n) in enumerate(batch):
            counts.append(n)
            if n == 0:
                nll.append(float("nan"))
                continue
            # logits[j] predicts the token at position (length - keep + j + 1)
            row_logits = logits[row, keep - n - 1 : keep - 1].float()
            targets = input_ids[row, length - n :].to(row_logits.device)
            nll.append(float(F.cross_entropy(row_logits, targets, reduction="mean")))
            embeddings[row] = hidden[row, length - n :].float().mean(0).cpu()
        return nll, counts, embeddings
