"""Tasks and their data: where each benchmark lives, how its rows are read, and the loaded items.

A task is a :class:`TaskSpec`: built-in ones (:data:`TASKS`: GSM8K, ARC-Easy, ARC-Challenge,
HellaSwag) read the Hub data sets or files in the layout of the project's shared data; user tasks
name their own file and columns. Rows become ``(question, gold answer)`` pairs (math tasks) or
:class:`MultipleChoiceItem` objects (multiple-choice tasks), collected in :class:`TaskData`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import EvaluationConfig

DEFAULT_TASKS = ("gsm8k", "arc_easy", "hellaswag")

# lm-eval-harness conventions: ARC is asked as "Question: ...\nAnswer:" and HellaSwag as
# "<activity>: <context>"; each choice is scored as the continuation " <choice>".
QUESTION_QUERY_TEMPLATE = "Question: {question}\nAnswer:"
CHOICE_DELIMITER = " "
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


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
    from ..data import load_any_dataset

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
