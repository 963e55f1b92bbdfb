"""User task files: a YAML or JSON list of :class:`~hf_patchdist.evaluation.tasks.TaskSpec` entries.

A task file names the user's own benchmarks next to the built-in ones
(``hf-patchdist evaluate --tasks-file my_tasks.yaml``)::

    tasks:                       # or the list alone, without the `tasks:` key
      - name: my_quiz
        kind: multiple_choice    # "math" or "multiple_choice"
        path: data/quiz.jsonl    # relative to this file's folder; or a saved data set folder, or a Hub id
        question_column: prompt
        choices_column: options
        answer_column: gold
      - name: my_math
        kind: math
        path: data/math.csv

Each entry takes ``name``, ``kind`` and ``path`` (required) and, optionally, ``config_name``,
``split`` and the column fields of :class:`TaskSpec` (``question_column``, ``answer_column``,
``context_column``, ``prefix_column``, ``choices_column``). A relative ``path`` that exists under
the task file's folder, or that looks like a file (a data suffix, ``./`` or ``../``), is resolved
against that folder; any other relative path is a Hub id. Errors name the file, the entry (index
and name) and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .tasks import TASKS, TaskSpec, get_task

TASK_FILE_FIELDS = (
    "name",
    "kind",
    "path",
    "config_name",
    "split",
    "question_column",
    "answer_column",
    "context_column",
    "prefix_column",
    "choices_column",
)
"""The keys a task file entry may have (``name``, ``kind`` and ``path`` are required)."""

_REQUIRED = ("name", "kind", "path")
_KINDS = ("math", "multiple_choice")
_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _read(path: Path) -> Any:
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"Task file {path}: not valid YAML: {error}") from error
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"Task file {path}: not valid JSON: {error}") from error
    raise ValueError(f"Task file {path}: unknown format {suffix or '(no suffix)'!r}; use .yaml, .yml or .json.")


def _resolve_path(value: str, folder: Path, where: str) -> str:
    """An existing local path (absolute), or the value itself when it reads as a Hub id."""
    path = Path(value).expanduser()
    if path.is_absolute():
        if not path.exists():
            raise ValueError(f"{where}, field 'path': {path} does not exist.")
        return str(path)
    local = (folder / path).resolve()
    if local.exists():
        return str(local)
    if value.startswith(("./", "../", ".\\", "..\\")) or path.suffix.lower() in _DATA_SUFFIXES:
        raise ValueError(f"{where}, field 'path': {value!r} resolves to {local}, which does not exist (relative paths are read from the task file's folder).")
    return value  # a Hub id such as "allenai/ai2_arc"


def _entry_spec(entry: Any, index: int, file: Path, folder: Path) -> TaskSpec:
    label = f"Task file {file}, entry {index}"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{label}: expected a mapping with keys {list(_REQUIRED)} (and optional fields), got {type(entry).__name__}.")
    name = entry.get("name")
    if isinstance(name, str) and name:
        label += f" ({name!r})"
    unknown = [key for key in entry if key not in TASK_FILE_FIELDS]
    if unknown:
        raise ValueError(f"{label}: unknown key {unknown[0]!r}; allowed keys: {', '.join(TASK_FILE_FIELDS)}.")
    for key in _REQUIRED:
        if entry.get(key) in (None, ""):
            raise ValueError(f"{label}: missing field {key!r} (every entry needs {', '.join(_REQUIRED)}).")
    for key, value in entry.items():
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{label}, field {key!r}: expected a string, got {type(value).__name__} {value!r}.")
    if not _NAME.match(name):
        raise ValueError(f"{label}, field 'name': {name!r} may hold only letters, digits, '_', '.' and '-' (it becomes a report key).")
    if name in TASKS:
        raise ValueError(
            f"{label}, field 'name': {name!r} is the name of a built-in task ({', '.join(sorted(TASKS))}); "
            "give your task its own name."
        )
    if entry["kind"] not in _KINDS:
        raise ValueError(f"{label}, field 'kind': must be 'math' or 'multiple_choice', got {entry['kind']!r}.")
    fields = {key: value for key, value in entry.items() if value is not None}
    fields["path"] = _resolve_path(fields["path"], folder, label)
    return TaskSpec(**fields)


def load_task_file(path: str | Path) -> list[TaskSpec]:
    """The task specs of a YAML (``.yaml``/``.yml``) or JSON (``.json``) task file.

    The file holds a list of entries, or a mapping with the single key ``tasks`` holding that list
    (see the module docstring for the fields). Relative data paths are resolved against the file's
    folder.

    Raises:
        FileNotFoundError: The task file does not exist.
        ValueError: The file cannot be parsed, or an entry is invalid: an unknown key, a missing
            ``name``/``kind``/``path``, a kind other than ``math``/``multiple_choice``, a name that is
            a built-in task's or another entry's, a local path that does not exist. The message
            names the file, the entry (index and name) and the field.

    Example:
        ```python
        from hf_patchdist.evaluation import load_task_file, run_evaluation

        run_evaluation("outputs/sft-model", base="smollm2-135m-instruct",
                       tasks=["gsm8k", *load_task_file("my_tasks.yaml")], output_dir="outputs/eval")
        ```
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"Task file {file} does not exist.")
    data = _read(file)
    if isinstance(data, Mapping):
        extra = [key for key in data if key != "tasks"]
        if extra or "tasks" not in data:
            raise ValueError(f"Task file {file}: a mapping at the top level may only have the key 'tasks' (a list of entries), found {list(data)}.")
        data = data["tasks"]
    if not isinstance(data, list) or not data:
        raise ValueError(f"Task file {file}: expected a non-empty list of task entries (or `tasks:` with one), got {type(data).__name__}.")
    folder = file.resolve().parent
    specs: list[TaskSpec] = []
    for index, entry in enumerate(data):
        spec = _entry_spec(entry, index, file, folder)
        previous = next((i for i, s in enumerate(specs) if s.name == spec.name), None)
        if previous is not None:
            raise ValueError(f"Task file {file}, entry {index} ({spec.name!r}), field 'name': entry {previous} has the same name.")
        specs.append(spec)
    return specs


def combine_tasks(builtin: Iterable[str] = (), specs: Sequence[TaskSpec] = ()) -> list[TaskSpec]:
    """Built-in task names and user specs (e.g. from :func:`load_task_file`) as one list, names unique.

    Raises:
        ValueError: An unknown built-in name, or a name that appears twice (naming where from).
    """
    tasks = [get_task(name) for name in builtin]
    seen = {}
    for spec, origin in [(t, "the built-in tasks") for t in tasks] + [(s, "the user tasks") for s in specs]:
        if spec.name in seen:
            raise ValueError(f"Task {spec.name!r} is named twice (in {seen[spec.name]} and in {origin}); task names must be unique.")
        seen[spec.name] = origin
    return [*tasks, *specs]


def task_spec_dict(spec: TaskSpec) -> dict[str, Any]:
    """A task spec's task-file fields (the ones set), JSON-serialisable: what a report records of a user task."""
    return {key: getattr(spec, key) for key in TASK_FILE_FIELDS if getattr(spec, key) is not None}
