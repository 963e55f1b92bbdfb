"""Measures by log-likelihood: continuation log-probabilities, KL to the base model, multiple choice, answer NLL.

Every measure here is a batched forward pass over (context, continuation) token ids through
:func:`hf_patchdist.scoring.forward_continuations`, the one :class:`~hf_patchdist.scoring.QAScorer`
uses, so the NLLs match the ones the rewriter records. No text is generated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..scoring import forward_continuations, padding_token_id, render_qa_prompt
from .metrics import MultipleChoiceAccuracy, _argmax
from .tasks import CHOICE_DELIMITER, MultipleChoiceItem


def encode_continuations(tokenizer: Any, contexts: Sequence[str], continuations: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """Token ids of each (context, continuation), tokenized separately as :class:`~hf_patchdist.scoring.QAScorer` does.

    Tokenizing the two parts separately keeps a choice's tokens independent of its context, and the
    NLLs identical to the ones the rewriter records. An empty context gets the BOS (else EOS) token
    so that the first continuation token has a prediction.
    """
    pairs = []
    for context, continuation in zip(contexts, continuations, strict=True):
        context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        if not context_ids:
            start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            context_ids = [start]
        pairs.append((context_ids, tokenizer(continuation, add_special_tokens=False)["input_ids"]))
    return pairs


def _batches(items: Sequence[Any], size: int, desc: str, show_progress: bool):
    from tqdm.auto import tqdm

    size = max(size, 1)
    starts = range(0, len(items), size)
    for start in tqdm(starts, desc=desc, disable=not show_progress or len(starts) < 2, leave=False):
        yield items[start : start + size]


@torch.no_grad()
def continuation_log_probs(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    continuations: Sequence[str],
    *,
    batch_size: int = 16,
    show_progress: bool = False,
    desc: str = "Scoring",
) -> list[torch.Tensor]:
    """Log-probability of every token of each continuation given its context, batched.

    Returns one float32 tensor per pair (empty for an empty continuation).
    """
    pairs = encode_continuations(tokenizer, contexts, continuations)
    results: list[torch.Tensor] = []
    pad_id = padding_token_id(tokenizer)
    for batch in _batches(pairs, batch_size, desc, show_progress):
        forward = forward_continuations(model, batch, pad_id)
        for row, (_, continuation) in enumerate(batch):
            n = len(continuation)
            if n == 0:
                results.append(torch.zeros(0))
                continue
            # Per-row float32 log-softmax: the (B, W, V) float32 copy of a whole batch would be large.
            row_logits = forward.logits[row, -n:].float()
            results.append((-F.cross_entropy(row_logits, forward.targets[row, -n:], reduction="none")).cpu())
    return results


@torch.no_grad()
def kl_divergence(
    base: Any,
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    continuations: Sequence[str],
    *,
    batch_size: int = 8,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Forward KL(pi_0 || pi) per token, on continuations sampled from pi_0.

    At each continuation position the exact KL over the vocabulary, ``sum_v p0(v) (log p0(v) -
    log p(v))``, is computed from both models' next-token distributions; the mean over all tokens is
    an estimate of the sequence-level KL per token with less variance than the log-ratio of the
    sampled tokens alone. Both models must share the tokenizer.

    Returns:
        ``{"kl": mean per token, "per_prompt": mean per prompt, "tokens": number of tokens}``.
    """
    pairs = encode_continuations(tokenizer, prompts, continuations)
    pad_id = padding_token_id(tokenizer)
    total, tokens = 0.0, 0
    per_prompt: list[float] = []
    for batch in _batches(pairs, batch_size, "KL", show_progress):
        base_forward = forward_continuations(base, batch, pad_id)
        base_logits, mask = base_forward.logits, base_forward.mask
        logits = forward_continuations(model, batch, pad_id).logits
        if base_logits.shape[-1] != logits.shape[-1]:
            raise ValueError(f"The models' vocabularies differ ({base_logits.shape[-1]} vs {logits.shape[-1]}): KL needs one tokenizer.")
        for row in range(len(batch)):
            keep = mask[row]
            if not keep.any():
                per_prompt.append(float("nan"))
                continue
            log_p0 = F.log_softmax(base_logits[row][keep].float(), dim=-1)
            log_p = F.log_softmax(logits[row][keep].float(), dim=-1)
            kl = (log_p0.exp() * (log_p0 - log_p)).sum(-1).clamp(min=0)  # clamp: float rounding below 0
            total += float(kl.sum())
            tokens += int(keep.sum())
            per_prompt.append(float(kl.mean()))
    return {"kl": total / tokens if tokens else float("nan"), "per_prompt": per_prompt, "tokens": tokens}


def evaluate_multiple_choice(
    model: Any,
    tokenizer: Any,
    items: Sequence[MultipleChoiceItem],
    *,
    batch_size: int = 16,
    show_progress: bool = True,
    desc: str = "Multiple choice",
) -> dict[str, Any]:
    """Score every choice of every item by log-likelihood; lm-eval ``acc``/``acc_norm`` and gold NLL per character.

    An item's choices go through the model in the same batch (items are never split across batches
    unless one item alone has more choices than ``batch_size``).

    Returns:
        ``{"acc", "acc_norm", "gold_nll_per_char", "n", "details"}``; ``details`` holds each item's
        per-choice log-likelihoods and predictions.
    """
    per_batch = max(1, batch_size // max((len(i.choices) for i in items), default=1))
    log_likelihoods: list[list[float]] = []
    for chunk in _batches(list(items), per_batch, desc, show_progress):
        contexts = [item.query for item in chunk for _ in item.choices]
        continuations = [CHOICE_DELIMITER + choice for item in chunk for choice in item.choices]
        scores = continuation_log_probs(model, tokenizer, contexts, continuations, batch_size=len(contexts))
        position = 0
        for item in chunk:
            log_likelihoods.append([float(s.sum()) for s in scores[position : position + len(item.choices)]])
            position += len(item.choices)
    lengths = [[len(choice) for choice in item.choices] for item in items]
    result = MultipleChoiceAccuracy().compute(
        predictions=log_likelihoods, references=[item.answer_index for item in items], choice_lengths=lengths
    )
    details = [
        {
            "answer_index": item.answer_index,
            "log_likelihoods": ll,
            "prediction": _argmax(ll),
            "prediction_norm": _argmax([s / max(n, 1) for s, n in zip(ll, length)]),
        }
        for item, ll, length in zip(items, log_likelihoods, lengths)
    ]
    return {
        "acc": result["accuracy"],
        "acc_norm": result["accuracy_norm"],
        "gold_nll_per_char": result["gold_nll_per_char"],
        "n": len(items),
        "details": details,
    }


def answer_nll(model: Any, tokenizer: Any, items: Sequence[tuple[str, str]], *, batch_size: int = 16, show_progress: bool = True) -> dict[str, Any]:
    """Mean per-token NLL of gold answers given the question as a chat user turn (held-out gain measure).

    The same quantity as the rewriter's ``patch_nll_*`` columns, but under the model given (an
    adapter, if any, stays on).

    Returns:
        ``{"nll": mean over items of the per-token mean NLL, "n", "per_item"}``.
    """
    prompts = [render_qa_prompt(tokenizer, q) for q, _ in items]
    log_probs = continuation_log_probs(
        model, tokenizer, prompts, [a for _, a in items], batch_size=batch_size, show_progress=show_progress, desc="Answer NLL"
    )
    per_item = [float(-lp.mean()) if lp.numel() else float("nan") for lp in log_probs]
    finite = [v for v in per_item if not math.isnan(v)]
    return {"nll": sum(finite) / len(finite) if finite else float("nan"), "n": len(finite), "per_item": per_item}
