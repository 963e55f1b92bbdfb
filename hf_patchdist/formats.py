"""Reading (question, expert answer) out of every TRL data set format, and writing a new answer back.

Formats, as TRL names them (https://huggingface.co/docs/trl/dataset_formats):

* conversational language modelling: a ``messages`` column; the last assistant turn is the target,
  the user turn before it is the question and everything earlier is context;
* prompt-completion, standard (``prompt``/``completion`` strings) or conversational (lists of
  messages);
* plain columns named by the user, such as GSM8K's ``question``/``answer`` (not a TRL format: the
  patch trainer turns them into prompt-completion rows after patching).

The output keeps the input's format and column types: only the target text changes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class DatasetFormat(str, Enum):
    """The data set formats the rewriter reads and writes."""

    MESSAGES = "messages"
    PROMPT_COMPLETION = "prompt_completion"
    CONVERSATIONAL_PROMPT_COMPLETION = "conversational_prompt_completion"
    PLAIN = "plain"


ACCEPTED_FORMATS_HELP = (
    "a 'messages' column (conversational), 'prompt' and 'completion' columns (standard or "
    "conversational), or plain question/answer columns named with question_column=/answer_column= "
    "(default 'question'/'answer')"
)


@dataclass(frozen=True)
class FormatSpec:
    """Where the question and the target live in a data set.

    Attributes:
        format: The detected :class:`DatasetFormat`.
        question_column: Column holding the question (``messages``, ``prompt`` or a plain column).
        answer_column: Column holding the target (``messages``, ``completion`` or a plain column).
    """

    format: DatasetFormat
    question_column: str
    answer_column: str

    @property
    def is_conversational(self) -> bool:
        return self.format in (DatasetFormat.MESSAGES, DatasetFormat.CONVERSATIONAL_PROMPT_COMPLETION)


@dataclass
class QAExample:
    """One example as the rewriter sees it.

    Attributes:
        question: Text of the question (the user turn answered by the target), or None if unreadable.
        answer: Text of the expert answer (the target), or None if unreadable.
        context: Chat messages before the question (system prompt, earlier turns); empty for plain text.
        error: Why the example cannot be rewritten (``"missing_answer"``...), or None.
    """

    question: str | None
    answer: str | None
    context: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def _looks_conversational(value: Any) -> bool:
    return isinstance(value, list) and (not value or isinstance(value[0], Mapping))


def _feature_is_conversational(feature: Any) -> bool | None:
    """Decide from a ``datasets`` feature whether a column holds lists of messages (None if unknown)."""
    if feature is None:
        return None
    if isinstance(feature, (list, tuple)):
        return True
    inner = getattr(feature, "feature", None)
    if inner is not None:  # datasets.List / Sequence / LargeList
        return isinstance(inner, dict) or type(inner).__name__ == "Features"
    if getattr(feature, "dtype", None) in ("string", "large_string"):
        return False
    return None


def detect_format(
    column_names: Iterable[str],
    *,
    question_column: str | None = None,
    answer_column: str | None = None,
    features: Mapping[str, Any] | None = None,
    sample: Mapping[str, Any] | None = None,
) -> FormatSpec:
    """Find the format of a data set from its columns.

    Args:
        column_names: The data set's columns.
        question_column: Plain column with the question; forces the plain format when given.
        answer_column: Plain column with the expert answer; forces the plain format when given.
        features: ``dataset.features``, used to tell standard from conversational prompt-completion.
        sample: One row, used instead of ``features`` when those are not known.

    Raises:
        ValueError: Naming the missing column(s) and the formats accepted.
    """
    columns = list(column_names)
    if question_column or answer_column:
        question_column = question_column or "question"
        answer_column = answer_column or "answer"
        missing = [c for c in (question_column, answer_column) if c not in columns]
        if missing:
            raise ValueError(
                f"Column(s) {missing} not found in the data set (columns: {columns}). Expected {ACCEPTED_FORMATS_HELP}."
            )
        return FormatSpec(DatasetFormat.PLAIN, question_column, answer_column)
    if "messages" in columns:
        return FormatSpec(DatasetFormat.MESSAGES, "messages", "messages")
    if "prompt" in columns and "completion" in columns:
        conversational = _feature_is_conversational((features or {}).get("completion"))
        if conversational is None and sample is not None:
            conversational = _looks_conversational(sample.get("completion"))
        fmt = DatasetFormat.CONVERSATIONAL_PROMPT_COMPLETION if conversational else DatasetFormat.PROMPT_COMPLETION
        return FormatSpec(fmt, "prompt", "completion")
    if "question" in columns and "answer" in columns:
        return FormatSpec(DatasetFormat.PLAIN, "question", "answer")
    raise ValueError(f"Cannot find the target in a data set with columns {columns}. Expected {ACCEPTED_FORMATS_HELP}.")


def detect_dataset_format(dataset: Any, *, question_column: str | None = None, answer_column: str | None = None) -> FormatSpec:
    """:func:`detect_format` for a ``datasets.Dataset`` (uses its features and first row)."""
    features = getattr(dataset, "features", None)
    sample = dataset[0] if len(dataset) and features is None else None
    return detect_format(
        dataset.column_names,
        question_column=question_column,
        answer_column=answer_column,
        features=features,
        sample=sample,
    )


def _last_assistant_index(messages: list[Mapping[str, Any]]) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], Mapping) and messages[index].get("role") == "assistant":
            return index
    return None


def _text_or_error(value: Any, missing: str) -> tuple[str | None, str | None]:
    if value is None:
        return None, missing
    if not isinstance(value, str):
        return None, f"non_string_{missing.split('_', 1)[1]}"
    if not value.strip():
        return None, f"empty_{missing.split('_', 1)[1]}"
    return value, None


def read_example(row: Mapping[str, Any], spec: FormatSpec) -> QAExample:
    """Read the question, expert answer and context of one row; problems go to ``error``, never raise."""
    if spec.format == DatasetFormat.PLAIN or spec.format == DatasetFormat.PROMPT_COMPLETION:
        question, q_error = _text_or_error(row.get(spec.question_column), "missing_question")
        answer, a_error = _text_or_error(row.get(spec.answer_column), "missing_answer")
        return QAExample(question, answer, [], a_error or q_error)

    if spec.format == DatasetFormat.MESSAGES:
        messages = row.get("messages")
        if not isinstance(messages, list):
            return QAExample(None, None, [], "missing_answer")
        index = _last_assistant_index(messages)
        if index is None:
            return QAExample(None, None, [], "missing_answer")
        prefix = list(messages[:index])
    else:  # conversational prompt-completion
        prompt, completion = row.get("prompt"), row.get("completion")
        if not isinstance(completion, list) or not isinstance(prompt, list):
            return QAExample(None, None, [], "missing_answer")
        index = _last_assistant_index(completion)
        if index is None:
            return QAExample(None, None, [], "missing_answer")
        messages = completion
        prefix = list(prompt) + list(completion[:index])

    answer, a_error = _text_or_error(messages[index].get("content"), "missing_answer")
    user_index = _last_user_index(prefix)
    if user_index is None:
        return QAExample(None, answer, prefix, a_error or "missing_question")
    question, q_error = _text_or_error(prefix[user_index].get("content"), "missing_question")
    context = [dict(m) for m in prefix[:user_index]]
    return QAExample(question, answer, context, a_error or q_error)


def _last_user_index(messages: list[Mapping[str, Any]]) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], Mapping) and messages[index].get("role") == "user":
            return index
    return None


def write_answer(row: Mapping[str, Any], spec: FormatSpec, answer: str) -> dict[str, Any]:
    """Return the new value of the target column with ``answer`` in place of the expert answer.

    Only the target column is returned (``{column: value}``), with the same structure and types as
    the input; the row itself is not modified.
    """
    column = spec.answer_column
    if spec.format in (DatasetFormat.PLAIN, DatasetFormat.PROMPT_COMPLETION):
        return {column: answer}
    messages = copy.deepcopy(row[column])
    index = _last_assistant_index(messages)
    if index is None:
        raise ValueError(f"Column {column!r} has no assistant turn to write into.")
    messages[index]["content"] = answer
    return {column: messages}


def qa_messages(example: QAExample) -> list[dict[str, Any]]:
    """The conversation QA(q): the context turns followed by the question as a plain user turn."""
    return [*example.context, {"role": "user", "content": example.question or ""}]


def to_prompt_completion(row: Mapping[str, Any], spec: FormatSpec) -> dict[str, Any]:
    """Turn a plain-column row into TRL's conversational prompt-completion format."""
    example = read_example(row, spec)
    return {
        "prompt": qa_messages(example),
        "completion": [{"role": "assistant", "content": row.get(spec.answer_column) or ""}],
    }
