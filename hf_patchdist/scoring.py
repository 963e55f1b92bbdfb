"""Scoring under pi_0: one batched forward pass gives each answer's NLL under QA(q) and an embedding.

``QA(q)`` is the question rendered as a plain user turn through the model's own chat template (what
the model sees when a user simply asks), not the rewriting prompt. The NLL is length-normalised
over the answer's tokens; the embedding is the mean of the last hidden state over the same tokens.
When the model carries a PEFT adapter, scoring runs with the adapter disabled, so the policy and
pi_0 share one backbone in memory; it always runs in eval mode (no dropout), whatever mode the
caller left the model in, and leaves that mode as it was.

:func:`forward_continuations` is the batched forward pass itself (context + continuation token ids
in, the logits predicting the continuation out); :mod:`hf_patchdist.evaluation` uses it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .formats import QAExample
from .generation.base import length_groups
from .models import model_context_length


@contextlib.contextmanager
def adapter_disabled(model: Any) -> Iterator[None]:
    """Run the base model pi_0: the PEFT adapter is switched off inside the block (no-op without one)."""
    disable = getattr(model, "disable_adapter", None)
    if disable is not None and getattr(model, "peft_config", None):
        with disable():
            yield
    else:
        yield


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Dropout off inside the block; every submodule's own train/eval flag is restored after it.

    pi_0 is a fixed distribution: during GRPO transformers puts the model in train mode before the
    rewards run, and with dropout (the LoRA's, or the backbone's own) two scorings of one text would
    differ. Restoring each module's flag, not calling ``model.train()``, keeps a part the caller froze
    in eval mode frozen.
    """
    modules = list(model.modules()) if callable(getattr(model, "modules", None)) else []
    modes = [(module, module.training) for module in modules]
    if any(training for _, training in modes):
        model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


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


def qa_prompt_of(tokenizer: Any, example: QAExample, qa_template: str | None = None) -> str:
    """QA(q) of one example, the context pi_0 scores every answer in: its question after its context turns.

    The one place both stages build it: Stage I (the GRPO rewards, from the ``question`` and ``qa_context``
    columns :class:`~hf_patchdist.trainers.RewriterTrainer` adds) and Stage II
    (:meth:`~hf_patchdist.rewriter.Rewriter.qa_prompt`), so the rewriter is trained on the NLL that Stage II
    selects by. The context is the row's system prompt and earlier turns (empty for plain text); a
    ``qa_template`` has no place for them and uses the question alone, in both stages.
    """
    return render_qa_prompt(tokenizer, example.question or "", example.context, qa_template)


def padding_token_id(tokenizer: Any) -> int:
    """The id written into padding by :func:`forward_continuations` (masked out, so any id works)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


@dataclass
class ContinuationForward:
    """Result of :func:`forward_continuations`: the positions that predict each row's continuation.

    ``W`` is the longest continuation of the batch; row ``i``'s ``n_i`` continuation tokens are
    right-aligned, in its last ``n_i`` positions (``mask`` marks them).

    Attributes:
        logits: ``(B, W, V)`` logits; ``logits[i, j]`` predicts ``targets[i, j]``. In the model's dtype.
        targets: ``(B, W)`` continuation token ids (padding where ``mask`` is False).
        mask: ``(B, W)`` bool, True at each row's continuation tokens.
        hidden_states: ``(B, W, hidden)`` last hidden state at the continuation tokens themselves
            (``hidden_states[i, j]`` is the state of ``targets[i, j]``), or None when not asked for.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    hidden_states: torch.Tensor | None = None


def forward_continuations(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int,
    *,
    output_hidden_states: bool = False,
) -> ContinuationForward:
    """One batched forward pass over ``(context_ids, continuation_ids)`` pairs.

    The model runs without cache on the concatenation of each pair; only the logits (and, when
    asked, the last hidden states) of the continuation positions come back. Shared by
    :class:`QAScorer` and :mod:`hf_patchdist.evaluation`.

    Args:
        model: A causal LM accepting ``position_ids`` and ``logits_to_keep``, as transformers' models do.
        pairs: Token ids of each context and of its continuation. Contexts must not be empty;
            continuations may be.
        pad_id: Token id written in the padding (masked out; it does not change the numbers).
        output_hidden_states: Also return the last hidden states of the continuation tokens.

    Returns:
        A :class:`ContinuationForward`; ``targets`` and ``mask`` are on the logits' device.

    Raises:
        ValueError: When ``pairs`` is empty or a context has no tokens (no position would predict
            the first continuation token; start such a context with the BOS token).

    Example:
        ```python
        pairs = [(tokenizer("2+3=")["input_ids"], tokenizer("5")["input_ids"])]
        out = forward_continuations(model, pairs, tokenizer.pad_token_id)
        nll = F.cross_entropy(out.logits[0][out.mask[0]].float(), out.targets[0][out.mask[0]])
        ```
    """
    if not pairs:
        raise ValueError("forward_continuations needs at least one (context, continuation) pair.")
    for index, (context, _) in enumerate(pairs):
        if len(context) == 0:
            raise ValueError(
                f"Pair {index} of the batch has an empty context: no position predicts its first continuation token. "
                "Start the context with a BOS (or EOS) token."
            )
    device = next(model.parameters()).device
    sequences = [[*context, *continuation] for context, continuation in pairs]
    length = max(len(s) for s in sequences)
    window = max(len(continuation) for _, continuation in pairs)
    input_ids = torch.full((len(pairs), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(pairs), length), dtype=torch.long)
    mask = torch.zeros((len(pairs), window), dtype=torch.bool)
    for row, sequence in enumerate(sequences):
        # Left padding puts every continuation at the end of its row, so the logits of the last
        # window + 1 positions cover all continuation tokens: the vocabulary projection never runs
        # over context tokens.
        input_ids[row, length - len(sequence) :] = torch.tensor(sequence, dtype=torch.long)
        attention[row, length - len(sequence) :] = 1
        mask[row, window - len(pairs[row][1]) :] = True
    # Explicit position ids keep the numbers independent of the padding (and so of the batch
    # composition).
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    output = model(
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        position_ids=position_ids.to(device),
        output_hidden_states=output_hidden_states,
        logits_to_keep=window + 1,
        use_cache=False,
    )
    # Position t predicts token t + 1: the last window + 1 logits, without the very last one.
    logits = output.logits[:, -(window + 1) : -1, :]
    hidden = output.hidden_states[-1][:, length - window :] if output_hidden_states else None
    return ContinuationForward(logits, input_ids[:, length - window :].to(logits.device), mask.to(logits.device), hidden)


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
        batch_size: Answers per forward pass at most (pairs are grouped by length, so a pass may hold fewer).
        max_answer_tokens: Answers are cut to this many tokens before scoring (None: no limit of its own).
        max_length: Prompt plus answer tokens scored at most: an answer that does not fit after its prompt is
            scored over the tokens that fit (its first ones), and gets NLL ``nan`` when none fit. Default: the
            model's context (:func:`~hf_patchdist.models.model_context_length`), where positions beyond it
            are untrained; None there means no limit.

    Example:
        ```python
        scorer = QAScorer(model, tokenizer)
        prompt = render_qa_prompt(tokenizer, "What is 2+3?")
        out = scorer.score([prompt, prompt], ["2+3=5\\n#### 5", "Five."])
        out.nll, out.embeddings.shape
        ```
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int = 16,
        max_answer_tokens: int | None = None,
        max_length: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_answer_tokens = max_answer_tokens
        self.max_length = max_length if max_length is not None else model_context_length(model)

    def _encode(self, prompt: str, answer: str) -> tuple[list[int], list[int]]:
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if self.max_answer_tokens is not None:
            answer_ids = answer_ids[: self.max_answer_tokens]
        if self.max_length is not None:
            answer_ids = answer_ids[: max(self.max_length - len(prompt_ids), 0)]
        return prompt_ids, answer_ids

    @torch.no_grad()
    def score(self, prompts: Sequence[str], answers: Sequence[str]) -> ScoreOutput:
        """NLL and embedding of each ``answers[i]`` as a continuation of ``prompts[i]``.

        An empty answer gets NLL ``nan`` and a zero embedding; so does one whose prompt leaves no room in
        ``max_length``.

        Raises:
            ValueError: When the numbers of prompts and answers differ, or a prompt has no tokens.
        """
        if len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
        pairs = [self._encode(p, a) for p, a in zip(prompts, answers)]
        # Only pairs with answer tokens run: a prompt that fills max_length is never fed to the model.
        scored = [i for i, (_, answer_ids) in enumerate(pairs) if answer_ids]
        # Pairs of similar length share a forward pass (at most batch_size of them): padding to the
        # longest pair of an unsorted batch cost a third of the scoring time on GSM8K rewrites.
        groups = length_groups([len(pairs[i][0]) + len(pairs[i][1]) for i in scored], max_rows=max(int(self.batch_size), 1))
        nll = [float("nan")] * len(pairs)
        counts = [0] * len(pairs)
        embeddings = torch.zeros(len(pairs), int(getattr(self.model.config, "hidden_size", 0)), dtype=torch.float32)
        with eval_mode(self.model), adapter_disabled(self.model):
            for group in groups:
                rows = [scored[g] for g in group]
                b_nll, b_counts, b_emb = self._score_batch([pairs[i] for i in rows])
                if embeddings.shape[-1] != b_emb.shape[-1]:
                    embeddings = torch.zeros(len(pairs), b_emb.shape[-1], dtype=torch.float32)
                for row, index in enumerate(rows):
                    nll[index], counts[index] = b_nll[row], b_counts[row]
                embeddings[rows] = b_emb
        return ScoreOutput(nll, counts, embeddings)

    def _score_batch(self, batch: list[tuple[list[int], list[int]]]) -> tuple[list[float], list[int], torch.Tensor]:
        forward = forward_continuations(self.model, batch, padding_token_id(self.tokenizer), output_hidden_states=True)
        nll: list[float] = []
        counts: list[int] = []
        embeddings = torch.zeros(len(batch), forward.hidden_states.shape[-1], dtype=torch.float32)
        for row, (_, answer_ids) in enumerate(batch):
            n = len(answer_ids)
            counts.append(n)
            if n == 0:
                nll.append(float("nan"))
                continue
            row_logits = forward.logits[row, -n:].float()
            nll.append(float(F.cross_entropy(row_logits, forward.targets[row, -n:], reduction="mean")))
            embeddings[row] = forward.hidden_states[row, -n:].float().mean(0).cpu()
        return nll, counts, embeddings
