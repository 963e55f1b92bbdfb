"""Measure what the method is for: downstream gain and forgetting.

Four kinds of measurement, all batched, on any causal LM (a PEFT adapter, when present, stays on):

* **downstream accuracy** (GSM8K-style): greedy generation through the model's chat template, the
  final answer extracted and compared for mathematical equivalence with the gold answer
  (:class:`MathAnswerAccuracy`);
* **multiple-choice accuracy** (ARC, HellaSwag, user data sets): the log-likelihood of each choice
  as a continuation of the lm-eval-harness query, raw (``acc``) and normalised by the choice's
  length in characters (``acc_norm``, the headline) (:class:`MultipleChoiceAccuracy`);
* **continuous measures**, informative where a small model's accuracies are noise: the mean
  per-character NLL of the gold choice, the mean per-token NLL of held-out gold answers, and the
  forward KL divergence KL(pi_0 || pi_tuned) per token on continuations sampled from pi_0 (on the
  new task's prompts and on general-domain chat prompts). "RL's Razor" (arXiv 2509.04259) finds that
  forgetting tracks exactly this KL, whatever the training method;
* **comparison with the base model**: ``forgetting = (base - tuned) / base`` per general benchmark
  on ``acc_norm`` (signed: negative means the tuned model got better), averaged into
  ``forgetting_mean``; downstream gain in accuracy and in held-out answer NLL.

:func:`run_evaluation` does all of it for one model (and its base) and writes a report as JSON,
a markdown table and a PNG plot (:func:`write_report`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import evaluate
import torch
import torch.nn.functional as F

from .generation import GenerationBackend, GenerationSettings, TransformersBackend
from .import_utils import is_matplotlib_available
from .scoring import render_qa_prompt
from .verifiers import MathVerifier, extract_math_answer, math_answers_equal


DEFAULT_TASKS = ("gsm8k", "arc_easy", "hellaswag")

# lm-eval-harness conventions: ARC is asked as "Question: ...\nAnswer:" and HellaSwag as
# "<activity>: <context>"; each choice is scored as the continuation " <choice>".
QUESTION_QUERY_TEMPLATE = "Question: {question}\nAnswer:"
CHOICE_DELIMITER = " "
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# ---------------------------------------------------------------------------------------------
# Tasks and their data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's data lives and how its columns are read.

    A task is either ``"math"`` (a question and a gold answer; accuracy by generation) or
    ``"multiple_choice"`` (a question or context, a list of choices and the index of the right one;
    accuracy by log-likelihood). Column names left as None are detected from the usual names
    (``question``/``answer``; ``question`` or ``context`` with ``activity_label``, ``choices`` or
    ``endings``, ``answer_index``).

    Attributes:
        name: Task name used in reports (``"gsm8k"``, ``"arc_easy"``...).
        kind: ``"math"`` or ``"multiple_choice"``.
        path: Hub id, local JSONL/JSON/Parquet/CSV file or saved data set folder.
        config_name: Hub configuration (``"main"`` for GSM8K, ``"ARC-Easy"``).
        split: Split to read.
        local_file: File under ``data_dir`` in the layout of the project's shared data.
        normalize: Turns a row of the Hub data set into the local schema (None: already in it).
        question_column: Column with the question.
        answer_column: Math: the gold answer text. Multiple choice: the index (or label) of the right choice.
        context_column: Multiple choice: a text to be continued (HellaSwag's ``context``).
        prefix_column: Multiple choice: a prefix before the context (HellaSwag's ``activity_label``).
        choices_column: Multiple choice: the list of choices.

    Example:
        ```python
        my_task = TaskSpec(name="my_quiz", kind="multiple_choice", path="quiz.jsonl",
                           question_column="prompt", choices_column="options", answer_column="gold")
        run_evaluation("my-model", tasks=["gsm8k", my_task], output_dir="eval")
        ```
    """

    name: str
    kind: str
    path: str | None = None
    config_name: str | None = None
    split: str = "test"
    local_file: str | None = None
    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    question_column: str | None = None
    answer_column: str | None = None
    context_column: str | None = None
    prefix_column: str | None = None
    choices_column: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("math", "multiple_choice"):
            raise ValueError(f"Task {self.name!r}: kind must be 'math' or 'multiple_choice', got {self.kind!r}.")


def _hellaswag_text(text: str) -> str:
    # lm-eval-harness's HellaSwag preprocessing (the shared JSONL copy already has it applied).
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def normalize_hub_arc(row: Mapping[str, Any]) -> dict[str, Any]:
    """An ``allenai/ai2_arc`` row (``choices: {text, label}``, ``answerKey``) in the local schema."""
    labels = list(row["choices"]["label"])
    return {
        "id": row.get("id"),
        "question": row["question"],
        "choices": list(row["choices"]["text"]),
        "labels": labels,
        "answer_index": labels.index(row["answerKey"]),
    }


def normalize_hub_hellaswag(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``Rowan/hellaswag`` row (``ctx_a``, ``ctx_b``, ``endings``, ``label``) in the local schema.

    The context is built as lm-eval-harness does (``ctx_b`` capitalised, tags removed).
    """
    context = row["ctx_a"] + " " + str(row["ctx_b"]).capitalize()
    return {
        "activity_label": _hellaswag_text(row["activity_label"]),
        "context": _hellaswag_text(context),
        "endings": [_hellaswag_text(e) for e in row["endings"]],
        "answer_index": int(row["label"]),
    }


TASKS: dict[str, TaskSpec] = {
    "gsm8k": TaskSpec("gsm8k", "math", "openai/gsm8k", "main", "test", "gsm8k/test.jsonl"),
    "arc_easy": TaskSpec("arc_easy", "multiple_choice", "allenai/ai2_arc", "ARC-Easy", "test", "arc_easy/test.jsonl", normalize_hub_arc),
    "arc_challenge": TaskSpec(
        "arc_challenge", "multiple_choice", "allenai/ai2_arc", "ARC-Challenge", "test", "arc_challenge/test.jsonl", normalize_hub_arc
    ),
    "hellaswag": TaskSpec("hellaswag", "multiple_choice", "Rowan/hellaswag", None, "validation", "hellaswag/validation.jsonl", normalize_hub_hellaswag),
}
"""Built-in tasks: Hub data sets for users with the Hub, files under ``data_dir`` otherwise."""


def get_task(task: str | TaskSpec) -> TaskSpec:
    """A :class:`TaskSpec` from a built-in name (or the spec itself)."""
    if isinstance(task, TaskSpec):
        return task
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; built-in tasks: {sorted(TASKS)} (or pass a TaskSpec for your own data set).")
    return TASKS[task]


def load_task_rows(task: str | TaskSpec, *, data_dir: str | Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` rows of a task, in the local schema.

    With ``data_dir`` a built-in task reads ``data_dir/<local_file>`` (the layout of the project's
    shared data); otherwise it reads its ``path`` (Hub id or local file) and normalises Hub rows.

    Raises:
        FileNotFoundError: When the data cannot be found (naming the file or Hub id).
    """
    from .data import load_any_dataset

    spec = get_task(task)
    if data_dir is not None and spec.local_file is not None:
        path = Path(data_dir) / spec.local_file
        if not path.is_file():
            raise FileNotFoundError(f"Task {spec.name!r}: {path} does not exist (expected the layout of ../shared/data: {spec.local_file}).")
        return list(load_any_dataset(str(path), limit=limit))
    if spec.path is None:
        raise ValueError(f"Task {spec.name!r} names no data: set TaskSpec.path (or pass data_dir for a built-in task).")
    path = Path(spec.path)
    if path.is_file():
        split = None  # a single file is one split
    elif path.exists() or limit is None:
        split = spec.split
    else:
        split = f"{spec.split}[:{limit}]"  # read only what is needed from the Hub
    rows = list(load_any_dataset(spec.path, split=split, config_name=spec.config_name, limit=limit))
    return [spec.normalize(row) for row in rows] if spec.normalize is not None and not path.exists() else rows


@dataclass
class MultipleChoiceItem:
    """One multiple-choice item.

    Attributes:
        query: The text every choice continues (lm-eval-harness style, no chat template).
        choices: The choices (each scored as ``" " + choice``).
        answer_index: Index of the right choice.
        question: The item as a user would ask it in a chat (for the general-domain KL prompts).
    """

    query: str
    choices: list[str]
    answer_index: int
    question: str = ""

    def chat_question(self) -> str:
        """The item as a chat question: its text and the lettered choices."""
        options = "\n".join(f"{_LETTERS[i]}. {choice}" for i, choice in enumerate(self.choices))
        return f"{self.question}\n\n{options}"


def _first_present(columns: Sequence[str], names: Sequence[str]) -> str | None:
    return next((name for name in names if name in columns), None)


def _answer_index(value: Any, row: Mapping[str, Any], num_choices: int) -> int:
    # Indices come as ints or digit strings; ARC-style letter labels resolve through `labels`.
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        labels = row.get("labels") or list(_LETTERS[:num_choices])
        return list(labels).index(value.strip())
    index = int(value)
    if not 0 <= index < num_choices:
        raise ValueError(f"answer index {index} is out of range for {num_choices} choices")
    return index


def to_multiple_choice_items(rows: Sequence[Mapping[str, Any]], spec: TaskSpec | None = None) -> list[MultipleChoiceItem]:
    """Read multiple-choice rows: ARC-style (``question``), HellaSwag-style (``context``), or named columns.

    Raises:
        ValueError: When the needed columns are missing, naming what was expected.
    """
    spec = spec or TaskSpec("multiple_choice", "multiple_choice")
    if not rows:
        return []
    columns = list(rows[0].keys())
    context = spec.context_column or (None if spec.question_column else _first_present(columns, ["context", "ctx"]))
    question = spec.question_column or (None if context else _first_present(columns, ["question"]))
    prefix = spec.prefix_column or (_first_present(columns, ["activity_label"]) if context else None)
    choices = spec.choices_column or _first_present(columns, ["choices", "endings"])
    answer = spec.answer_column or _first_present(columns, ["answer_index", "label", "answer"])
    if (context or question) is None or choices is None or answer is None:
        raise ValueError(
            f"Task {spec.name!r}: multiple-choice rows need a question (or context) column, a choices column and an "
            f"answer-index column; found columns {columns}. Name them with question_column=/context_column=, "
            "choices_column= and answer_column=."
        )
    items = []
    for row in rows:
        options = [str(c) for c in row[choices]]
        if context is not None:
            text = str(row[context])
            if prefix is not None and row.get(prefix):
                text = f"{row[prefix]}: {text}"
            query, asked = text, f"Which ending best continues this text?\n\n{text} ..."
        else:
            query, asked = QUESTION_QUERY_TEMPLATE.format(question=row[question]), str(row[question])
        items.append(MultipleChoiceItem(query, options, _answer_index(row[answer], row, len(options)), asked))
    return items


def to_math_items(rows: Sequence[Mapping[str, Any]], spec: TaskSpec | None = None) -> list[tuple[str, str]]:
    """``(question, gold answer)`` pairs from rows with a question and an answer column."""
    spec = spec or TaskSpec("math", "math")
    question, answer = spec.question_column or "question", spec.answer_column or "answer"
    if rows and (question not in rows[0] or answer not in rows[0]):
        raise ValueError(
            f"Task {spec.name!r}: rows need {question!r} and {answer!r} columns, found {list(rows[0])}; "
            "name them with question_column=/answer_column=."
        )
    return [(str(row[question]), str(row[answer])) for row in rows]


# ---------------------------------------------------------------------------------------------
# Metrics (local evaluate modules: evaluate.load("accuracy") needs the Hub)
# ---------------------------------------------------------------------------------------------


def math_answer_correct(prediction: str, reference: str) -> bool:
    """Whether the final answer extracted from ``prediction`` equals the gold answer of ``reference``.

    Only the final answers are compared (``#### n``, ``\\boxed{}``, "the answer is", else the last
    number), not the reasoning: this is downstream accuracy, not the rewriting gate.
    """
    predicted, gold = extract_math_answer(prediction), extract_math_answer(reference)
    return predicted is not None and gold is not None and math_answers_equal(predicted, gold)


class MathAnswerAccuracy(evaluate.Metric):
    """Accuracy of generated math solutions by final-answer extraction and equivalence.

    Inputs: ``predictions`` (generated texts) and ``references`` (gold solutions or bare answers).
    Returns ``accuracy`` and ``extracted`` (the fraction of predictions with a readable answer).

    Example:
        ```python
        metric = MathAnswerAccuracy()
        metric.compute(predictions=["2+3=5, so the answer is 5."], references=["2+3=<<2+3=5>>5\\n#### 5"])
        # {'accuracy': 1.0, 'extracted': 1.0}
        ```
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("keep_in_memory", True)  # nothing to share between processes: no cache files
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Final-answer accuracy of generated math solutions (extraction + mathematical equivalence).",
            citation="",
            inputs_description="predictions: generated solutions (str); references: gold solutions or answers (str).",
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
        n = len(predictions)
        correct = sum(math_answer_correct(p, r) for p, r in zip(predictions, references))
        extracted = sum(extract_math_answer(p) is not None for p in predictions)
        return {"accuracy": correct / n if n else float("nan"), "extracted": extracted / n if n else float("nan")}


class MultipleChoiceAccuracy(evaluate.Metric):
    """Multiple-choice accuracy from per-choice log-likelihoods, as lm-eval-harness computes it.

    Inputs: ``predictions`` (for each item, the summed log-likelihood of each choice), ``references``
    (the right choice's index) and ``choice_lengths`` (each choice's length in characters).
    Returns ``accuracy`` (argmax of the log-likelihood, lm-eval's ``acc``), ``accuracy_norm``
    (argmax of log-likelihood per character, ``acc_norm``) and ``gold_nll_per_char`` (mean NLL per
    character of the right choice: a continuous measure that moves before the accuracies do).

    Example:
        ```python
        metric = MultipleChoiceAccuracy()
        metric.compute(predictions=[[-3.0, -8.0]], references=[0], choice_lengths=[[2, 20]])
        # {'accuracy': 1.0, 'accuracy_norm': 0.0, 'gold_nll_per_char': 1.5}
        ```
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("keep_in_memory", True)
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Multiple-choice accuracy by log-likelihood of each choice, raw and length-normalised (lm-eval acc/acc_norm).",
            citation="",
            inputs_description=(
                "predictions: per-choice summed log-likelihoods (list of float); references: index of the right choice (int); "
                "choice_lengths: per-choice length in characters (list of int)."
            ),
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                    "choice_lengths": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions: Sequence[Sequence[float]], references: Sequence[int], choice_lengths: Sequence[Sequence[int]]) -> dict[str, float]:
        n = len(predictions)
        if n == 0:
            return {"accuracy": float("nan"), "accuracy_norm": float("nan"), "gold_nll_per_char": float("nan")}
        raw = norm = 0
        gold_nll = 0.0
        for scores, gold, lengths in zip(predictions, references, choice_lengths):
            per_char = [s / max(length, 1) for s, length in zip(scores, lengths)]
            raw += _argmax(scores) == gold
            norm += _argmax(per_char) == gold
            gold_nll += -per_char[gold]
        return {"accuracy": raw / n, "accuracy_norm": norm / n, "gold_nll_per_char": gold_nll / n}


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])  # first index on ties, as numpy


# ---------------------------------------------------------------------------------------------
# Batched forward passes: continuation log-probabilities and KL
# ---------------------------------------------------------------------------------------------


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


def _continuation_logits(model: Any, pairs: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward pass over a batch; the logits that predict each row's continuation tokens.

    Returns ``(logits, targets, mask)`` of shapes ``(B, L, V)``, ``(B, L)``, ``(B, L)`` with
    ``L`` the longest continuation; row ``i``'s continuation fills the last ``n_i`` positions.
    """
    device = next(model.parameters()).device
    sequences = [context + continuation for context, continuation in pairs]
    length = max(len(s) for s in sequences)
    window = max(len(c) for _, c in pairs)
    input_ids = torch.full((len(pairs), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(pairs), length), dtype=torch.long)
    mask = torch.zeros((len(pairs), window), dtype=torch.bool)
    for row, sequence in enumerate(sequences):
        # Left padding puts every continuation at the end of its row, so only the last window + 1
        # positions go through the vocabulary projection.
        input_ids[row, length - len(sequence) :] = torch.tensor(sequence, dtype=torch.long)
        attention[row, length - len(sequence) :] = 1
        mask[row, window - len(pairs[row][1]) :] = True
    # Explicit position ids make the numbers independent of padding, hence of batch composition.
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    output = model(
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        position_ids=position_ids.to(device),
        logits_to_keep=window + 1,
        use_cache=False,
    )
    logits = output.logits[:, -(window + 1) : -1, :]
    return logits, input_ids[:, length - window :].to(logits.device), mask.to(logits.device)


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


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
    pad_id = _pad_id(tokenizer)
    for batch in _batches(pairs, batch_size, desc, show_progress):
        logits, targets, _ = _continuation_logits(model, batch, pad_id)
        for row, (_, continuation) in enumerate(batch):
            n = len(continuation)
            if n == 0:
                results.append(torch.zeros(0))
                continue
            # Per-row float32 log-softmax: the (B, L, V) float32 copy of a whole batch would be large.
            row_logits = logits[row, -n:].float()
            results.append((-F.cross_entropy(row_logits, targets[row, -n:], reduction="none")).cpu())
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
    pad_id = _pad_id(tokenizer)
    total, tokens = 0.0, 0
    per_prompt: list[float] = []
    for batch in _batches(pairs, batch_size, "KL", show_progress):
        base_logits, _, mask = _continuation_logits(base, batch, pad_id)
        logits, _, _ = _continuation_logits(model, batch, pad_id)
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


# ---------------------------------------------------------------------------------------------
# Task evaluations
# ---------------------------------------------------------------------------------------------


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


def generate_answers(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    *,
    backend: GenerationBackend | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    stop_at_final_answer: bool = True,
    show_progress: bool = True,
) -> list[str]:
    """Greedy answers to questions asked through the chat template (QA(q), as a user would ask).

    Generation stops at a completed final-answer line ("#### n", a closed ``\\boxed{}``, "The answer
    is n.") when ``stop_at_final_answer``: what follows cannot change the extracted answer much and
    costs most of the time on a CPU.
    """
    backend = backend or TransformersBackend(model, tokenizer, show_progress=show_progress)
    prompts = [render_qa_prompt(tokenizer, question) for question in questions]
    settings = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=False, batch_size=batch_size)
    stop = MathVerifier().final_answer_end if stop_at_final_answer else None
    generated = backend.generate(prompts, num_candidates=1, settings=settings, stop=stop)
    return [candidates[0].text for candidates in generated]


def evaluate_math_generation(
    model: Any,
    tokenizer: Any,
    items: Sequence[tuple[str, str]],
    *,
    backend: GenerationBackend | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Downstream accuracy: greedy generation, then final-answer extraction and equivalence.

    Returns:
        ``{"accuracy", "extracted", "n", "details"}`` with each item's generation and correctness.
    """
    questions = [q for q, _ in items]
    references = [a for _, a in items]
    texts = generate_answers(
        model, tokenizer, questions, backend=backend, max_new_tokens=max_new_tokens, batch_size=batch_size, show_progress=show_progress
    )
    result = MathAnswerAccuracy().compute(predictions=texts, references=references)
    details = [
        {"question": q, "generation": t, "predicted": extract_math_answer(t), "gold": extract_math_answer(a), "correct": math_answer_correct(t, a)}
        for q, t, a in zip(questions, texts, references)
    ]
    return {"accuracy": result["accuracy"], "extracted": result["extracted"], "n": len(items), "details": details}


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


def sample_continuations(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 16,
    show_progress: bool = True,
) -> list[str]:
    """Continuations sampled from the model at temperature 1 (the pi_0 samples of the KL measure).

    A continuation that ended on its own gets the EOS token appended, so that the KL also covers the
    decision to stop.
    """
    backend = TransformersBackend(model, tokenizer, show_progress=show_progress)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_p=1.0, batch_size=batch_size)
    torch.manual_seed(seed)
    generated = backend.generate(list(prompts), num_candidates=1, settings=settings)
    eos = tokenizer.eos_token or ""
    return [c[0].text if c[0].truncated else c[0].text + eos for c in generated]


# ---------------------------------------------------------------------------------------------
# One model, all tasks
# ---------------------------------------------------------------------------------------------


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


@dataclass
class TaskData:
    """The loaded items of the tasks of an evaluation.

    Attributes:
        math: Math tasks: name -> ``(question, gold answer)`` pairs.
        multiple_choice: Multiple-choice tasks: name -> items.
    """

    math: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    multiple_choice: dict[str, list[MultipleChoiceItem]] = field(default_factory=dict)

    @property
    def new_task(self) -> str | None:
        """The downstream task (the first math task): its prompts are the KL's new-task prompts."""
        return next(iter(self.math), None)


def load_tasks(tasks: Sequence[str | TaskSpec] = DEFAULT_TASKS, *, data_dir: str | Path | None = None, config: EvaluationConfig | None = None) -> TaskData:
    """Load and normalise the items of ``tasks`` (first ``config.limit_for(task)`` rows each)."""
    config = config or EvaluationConfig()
    data = TaskData()
    for task in tasks:
        spec = get_task(task)
        rows = load_task_rows(spec, data_dir=data_dir, limit=config.limit_for(spec.name))
        if spec.kind == "math":
            data.math[spec.name] = to_math_items(rows, spec)
        else:
            data.multiple_choice[spec.name] = to_multiple_choice_items(rows, spec)
    return data


def kl_prompts(tokenizer: Any, data: TaskData, num_prompts: int) -> dict[str, list[str]]:
    """Chat-rendered prompts of the two KL measures.

    ``"new_task"``: the first questions of the downstream task. ``"general"``: general-benchmark
    items asked as chat questions, taken in turn from each benchmark (20 + 20 of 40 with two).
    """
    prompts: dict[str, list[str]] = {}
    if data.new_task is not None:
        prompts["new_task"] = [render_qa_prompt(tokenizer, q) for q, _ in data.math[data.new_task][:num_prompts]]
    pools = [items for items in data.multiple_choice.values() if items]
    if pools:
        general: list[str] = []
        for index in range(max(len(p) for p in pools)):
            general += [render_qa_prompt(tokenizer, p[index].chat_question()) for p in pools if index < len(p)]
        prompts["general"] = general[:num_prompts]
    return prompts


def build_kl_reference(base: Any, tokenizer: Any, data: TaskData, config: EvaluationConfig | None = None) -> dict[str, dict[str, list[str]]]:
    """The pi_0 samples of the KL measures: ``{set: {"prompts": [...], "continuations": [...]}}``.

    JSON-serialisable, so that every model of a comparison is measured on the same samples, also
    across processes (the benchmark stores it next to its results).
    """
    config = config or EvaluationConfig()
    reference = {}
    for name, prompts in kl_prompts(tokenizer, data, config.kl_prompts).items():
        continuations = sample_continuations(
            base, tokenizer, prompts, max_new_tokens=config.kl_tokens, seed=config.seed, batch_size=config.generation_batch_size, show_progress=config.show_progress
        )
        reference[name] = {"prompts": prompts, "continuations": continuations}
    return reference


def evaluate_model(
    model: Any,
    tokenizer: Any,
    data: TaskData,
    *,
    config: EvaluationConfig | None = None,
    base: Any = None,
    kl_reference: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    backend: GenerationBackend | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every measure of one model on loaded tasks.

    Args:
        model: The model to evaluate.
        tokenizer: Its tokenizer.
        data: Items from :func:`load_tasks`.
        config: Sizes and settings.
        base: pi_0, for the KL measures (skipped when None).
        kl_reference: pi_0 samples from :func:`build_kl_reference` (sampled from ``base`` when None).
        backend: Generation backend for the math tasks (default: transformers on ``model``).

    Returns:
        ``(metrics, details)``. ``metrics`` is flat: ``<math task>`` (accuracy), ``<math task>_n``,
        ``heldout_answer_nll`` (first math task), ``<mc task>`` (acc_norm), ``<mc task>_raw`` (acc),
        ``<mc task>_gold_nll`` (per character), ``<mc task>_n``, and with a base ``kl_from_base``
        (new-task prompts) and ``kl_general``. ``details`` holds per-item records.
    """
    config = config or EvaluationConfig()
    model.eval()
    metrics: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for name, items in data.math.items():
        result = evaluate_math_generation(
            model, tokenizer, items, backend=backend, max_new_tokens=config.max_new_tokens, batch_size=config.generation_batch_size, show_progress=config.show_progress
        )
        metrics[name], metrics[f"{name}_n"], metrics[f"{name}_extracted"] = result["accuracy"], result["n"], result["extracted"]
        details[name] = result["details"]
        if name == data.new_task:
            nll = answer_nll(model, tokenizer, items, batch_size=config.batch_size, show_progress=config.show_progress)
            metrics["heldout_answer_nll"], metrics["heldout_answer_nll_n"] = nll["nll"], nll["n"]
    for name, items in data.multiple_choice.items():
        result = evaluate_multiple_choice(model, tokenizer, items, batch_size=config.batch_size, show_progress=config.show_progress, desc=name)
        metrics.update({name: result["acc_norm"], f"{name}_raw": result["acc"], f"{name}_gold_nll": result["gold_nll_per_char"], f"{name}_n": result["n"]})
        details[name] = result["details"]
    if base is not None:
        if kl_reference is None:
            kl_reference = build_kl_reference(base, tokenizer, data, config)
        for key, metric in (("new_task", "kl_from_base"), ("general", "kl_general")):
            if key in kl_reference:
                ref = kl_reference[key]
                kl = kl_divergence(base, model, tokenizer, ref["prompts"], ref["continuations"], batch_size=config.batch_size, show_progress=config.show_progress)
                metrics[metric], metrics[f"{metric}_tokens"] = kl["kl"], kl["tokens"]
    return metrics, details


# ---------------------------------------------------------------------------------------------
# Comparison with the base model
# ---------------------------------------------------------------------------------------------


def forgetting(base: float, tuned: float) -> float | None:
    """``(base - tuned) / base``: the relative loss of a general ability. Signed; None when base is 0.

    Example:
        ```python
        >>> forgetting(0.5, 0.4)   # lost a fifth
        0.2
        >>> forgetting(0.5, 0.6)   # got better
        -0.2
        ```
    """
    if base is None or tuned is None or base == 0 or math.isnan(base) or math.isnan(tuned):
        return None
    return round((base - tuned) / base, 12)


def compare_to_base(metrics: Mapping[str, Any], base_metrics: Mapping[str, Any], *, general_tasks: Sequence[str], new_task: str | None = "gsm8k") -> dict[str, Any]:
    """Forgetting per general benchmark (on acc_norm), its mean, and the downstream gains.

    Returns:
        ``forgetting_<task>`` for each general task, ``forgetting_mean`` (mean over the tasks where it
        is defined), ``<new_task>_gain`` (tuned minus base accuracy) and ``heldout_nll_gain`` (base
        minus tuned held-out answer NLL; positive means the tuned model fits the task better).
    """
    comparison: dict[str, Any] = {}
    values = []
    for task in general_tasks:
        if task in metrics and task in base_metrics:
            value = forgetting(base_metrics[task], metrics[task])
            comparison[f"forgetting_{task}"] = value
            if value is not None:
                values.append(value)
    comparison["forgetting_mean"] = sum(values) / len(values) if values else None
    if new_task and new_task in metrics and new_task in base_metrics:
        comparison[f"{new_task}_gain"] = metrics[new_task] - base_metrics[new_task]
    if "heldout_answer_nll" in metrics and "heldout_answer_nll" in base_metrics:
        comparison["heldout_nll_gain"] = base_metrics["heldout_answer_nll"] - metrics["heldout_answer_nll"]
    return comparison


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------

REPORT_COLUMNS = (
    ("gsm8k", "GSM8K acc", "{:.3f}"),
    ("gsm8k_gain", "GSM8K gain", "{:+.3f}"),
    ("heldout_answer_nll", "held-out answer NLL", "{:.3f}"),
    ("arc_easy", "ARC-E acc_norm", "{:.3f}"),
    ("arc_easy_raw", "ARC-E acc", "{:.3f}"),
    ("arc_easy_gold_nll", "ARC-E gold NLL/char", "{:.3f}"),
    ("hellaswag", "HellaSwag acc_norm", "{:.3f}"),
    ("hellaswag_raw", "HellaSwag acc", "{:.3f}"),
    ("hellaswag_gold_nll", "HellaSwag gold NLL/char", "{:.3f}"),
    ("forgetting_mean", "forgetting (mean)", "{:+.2%}"),
    ("kl_from_base", "KL GSM8K", "{:.3f}"),
    ("kl_general", "KL general", "{:.3f}"),
    ("target_nll", "target NLL", "{:.3f}"),
)


def _format(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value)


def markdown_table(methods: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table, one row per method, of the columns any method has."""
    columns = [c for c in REPORT_COLUMNS if any(c[0] in m for m in methods.values())]
    sizes = {key.removesuffix("_n"): value for m in methods.values() for key, value in m.items() if key.endswith("_n") and isinstance(value, int)}
    header = "| method | " + " | ".join(
        f"{title} (n={sizes[key]})" if key in sizes else title for key, title, _ in columns
    ) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for name, metrics in methods.items():
        lines.append(f"| {name} | " + " | ".join(_format(metrics.get(key), fmt) for key, _, fmt in columns) + " |")
    return "\n".join(lines)


def plot_gain_vs_forgetting(methods: Mapping[str, Mapping[str, Any]], path: str | Path, *, title: str | None = None) -> Path | None:
    """PNG: downstream gain against mean forgetting, one labelled point per method.

    Left panel: GSM8K accuracy gain against ``forgetting_mean`` (the accuracy view). Right panel,
    when the continuous measures are there: held-out answer NLL gain against ``kl_general`` (the
    view that stays informative when accuracies are within noise). The good corner is top-left.
    Returns None (and writes nothing) without matplotlib.
    """
    if not is_matplotlib_available():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = [("forgetting_mean", "gsm8k_gain", "mean forgetting on general benchmarks\n(base - tuned) / base of acc_norm  [%]", "GSM8K accuracy gain  [points]", 100.0, 100.0)]
    if any("kl_general" in m and "heldout_nll_gain" in m for m in methods.values()):
        views.append(("kl_general", "heldout_nll_gain", "KL(base || tuned) per token on general chat prompts", "held-out GSM8K answer NLL gain  [nats/token]", 1.0, 1.0))
    fig, axes = plt.subplots(1, len(views), figsize=(6.2 * len(views), 5.0), squeeze=False)
    for ax, (xkey, ykey, xlabel, ylabel, xscale, yscale) in zip(axes[0], views):
        points = [
            (index, name, metrics[xkey] * xscale, metrics[ykey] * yscale)
            for index, (name, metrics) in enumerate(methods.items())
            if metrics.get(xkey) is not None and metrics.get(ykey) is not None
        ]
        span_x = (max(p[2] for p in points) - min(p[2] for p in points)) or 1.0 if points else 1.0
        span_y = (max(p[3] for p in points) - min(p[3] for p in points)) or 1.0 if points else 1.0
        for position, (index, name, x, y) in enumerate(points):
            # Methods that land on (nearly) the same spot get their labels stacked, not overprinted.
            near = sum(abs(x - px) < 0.03 * span_x and abs(y - py) < 0.03 * span_y for _, _, px, py in points[:position])
            ax.scatter([x], [y], s=60, color=f"C{index}", zorder=3)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6 + 12 * near), fontsize=10, color=f"C{index}")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.set_title("better: up and to the left", fontsize=9, color="0.35")
    sizes = ", ".join(
        f"{key.removesuffix('_n')} n={n}" for key, n in next(iter(methods.values()), {}).items() if key.endswith("_n") and isinstance(n, int)
    )
    fig.suptitle(title or "Downstream gain vs forgetting (each point: one fine-tuned model vs the base)")
    if sizes:
        fig.text(0.5, 0.005, f"items: {sizes}", ha="center", fontsize=8, color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean_json(value: Any) -> Any:
    # NaN is not JSON: write null instead, so any JSON reader can load the report.
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    return value


def write_json(data: Any, path: str | Path) -> Path:
    """Write ``data`` as indented JSON (NaN as null), atomically, creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean_json(data), indent=2, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def write_report(
    methods: Mapping[str, Mapping[str, Any]],
    output_dir: str | Path,
    *,
    config: Mapping[str, Any] | None = None,
    name: str = "results",
    title: str | None = None,
) -> dict[str, Path]:
    """Write ``<name>.json`` (``{"methods": ..., "config": ...}``), ``<name>.md`` and ``gain_vs_forgetting.png``.

    Returns:
        The paths written, by kind (``json``, ``markdown``, and ``plot`` when matplotlib is installed).
    """
    output_dir = Path(output_dir)
    paths = {"json": write_json({"methods": dict(methods), "config": dict(config or {})}, output_dir / f"{name}.json")}
    text = f"# {title or 'Evaluation'}\n\n{markdown_table(methods)}\n\n" + (
        "acc_norm: accuracy by log-likelihood per character of each choice (headline); acc: by raw log-likelihood. "
        "forgetting = (base - tuned) / base of acc_norm, averaged over the general benchmarks (negative: better than base). "
        "KL: forward KL(base || tuned) per token on continuations sampled from the base model. "
        "NLL columns: lower is better; an accuracy on n items has a standard error of about sqrt(p(1-p)/n).\n"
    )
    paths["markdown"] = output_dir / f"{name}.md"
    paths["markdown"].write_text(text)
    plot = plot_gain_vs_forgetting(methods, output_dir / "gain_vs_forgetting.png", title=title)
    if plot is not None:
        paths["plot"] = plot
    return paths


# ---------------------------------------------------------------------------------------------
# Top level
# ---------------------------------------------------------------------------------------------


def _load(model: Any, tokenizer: Any, dtype: Any, device: str | None) -> tuple[Any, Any, str]:
    from .models import load_model_and_tokenizer

    if isinstance(model, (str, Path)):
        loaded, loaded_tokenizer = load_model_and_tokenizer(str(model), dtype=dtype, device=device)
        return loaded, tokenizer or loaded_tokenizer, str(model)
    if tokenizer is None:
        raise ValueError("Pass the tokenizer together with a loaded model.")
    return model, tokenizer, str(getattr(getattr(model, "config", None), "_name_or_path", "") or "model")


def run_evaluation(
    model: Any,
    *,
    base: Any = None,
    tokenizer: Any = None,
    tasks: Sequence[str | TaskSpec] = DEFAULT_TASKS,
    limit: int | dict[str, int] | None = None,
    data_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    config: EvaluationConfig | None = None,
    base_metrics: Mapping[str, Any] | None = None,
    dtype: Any = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Evaluate a model (and its base): downstream accuracy, multiple-choice accuracy, NLLs, KL, forgetting.

    Args:
        model: Model to evaluate: alias, local folder or Hub id, or a loaded model (with ``tokenizer``).
        base: The model it was fine-tuned from (same forms; a loaded base uses the same tokenizer).
            Needed for the KL measures and the forgetting/gain comparison.
        tokenizer: Tokenizer of a loaded ``model``.
        tasks: Built-in task names (``gsm8k``, ``arc_easy``, ``arc_challenge``, ``hellaswag``) or
            :class:`TaskSpec` objects. The first math task is the downstream task; the
            multiple-choice tasks are the general benchmarks.
        limit: Items per task (int or mapping); overrides ``config.limit``.
        data_dir: Folder with local JSONL in the layout of the project's shared data
            (``gsm8k/test.jsonl``...); None reads the Hub data sets.
        output_dir: Where to write the report (``results.json``, ``results.md``,
            ``gain_vs_forgetting.png``) and per-item details (``details.json``); None writes nothing.
        config: Sizes and settings (:class:`EvaluationConfig`).
        base_metrics: The base model's metrics from an earlier evaluation (skips re-evaluating it).
        dtype: dtype for models loaded by name (``"auto"``: bfloat16 where supported).
        device: Device for models loaded by name.

    Returns:
        ``{"model", "base", "metrics", "base_metrics", "comparison", "config", "files"}``; ``metrics``
        as in :func:`evaluate_model`, ``comparison`` as in :func:`compare_to_base`.

    Example:
        ```python
        from hf_patchdist.evaluation import run_evaluation

        report = run_evaluation("outputs/sft-model", base="smollm2-135m-instruct", limit=100,
                                data_dir="../shared/data", output_dir="outputs/eval")
        report["comparison"]["forgetting_mean"], report["metrics"]["kl_general"]
        ```
    """
    config = replace(config or EvaluationConfig(), **({"limit": limit} if limit is not None else {}))
    model, tokenizer, model_name = _load(model, tokenizer, dtype, device)
    data = load_tasks(tasks, data_dir=data_dir, config=config)
    base_model, base_name = None, None
    if base is not None:
        base_model, _, base_name = _load(base, tokenizer, dtype, device)
    kl_reference = build_kl_reference(base_model, tokenizer, data, config) if base_model is not None else None
    metrics, model_details = evaluate_model(model, tokenizer, data, config=config, base=base_model, kl_reference=kl_reference)
    details = {"model": model_details}
    comparison: dict[str, Any] = {}
    if base_model is not None and base_metrics is None:
        base_metrics, details["base"] = evaluate_model(base_model, tokenizer, data, config=config)
        base_metrics.update(kl_from_base=0.0, kl_general=0.0)
    if base_metrics is not None:
        comparison = compare_to_base(metrics, base_metrics, general_tasks=list(data.multiple_choice), new_task=data.new_task)
    result = {
        "model": model_name,
        "base": base_name,
        "metrics": metrics,
        "base_metrics": dict(base_metrics) if base_metrics is not None else None,
        "comparison": comparison,
        "config": {**config.to_dict(), "tasks": [get_task(t).name for t in tasks], "data_dir": str(data_dir) if data_dir else None},
        "files": {},
    }
    if output_dir is not None:
        methods = {}
        if base_metrics is not None:
            methods["base"] = {**base_metrics, "forgetting_mean": 0.0}
        methods["model"] = {**metrics, **comparison}
        files = write_report(methods, output_dir, config={**result["config"], "model": model_name, "base": base_name}, title=f"Evaluation of {model_name}")
        files["details"] = write_json(details, Path(output_dir) / "details.json")
        result["files"] = {k: str(v) for k, v in files.items()}
    return result
