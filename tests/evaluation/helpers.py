"""Shared pieces of the evaluation tests: the tiny fixture files laid out as the project's shared data."""

from __future__ import annotations

import shutil
from pathlib import Path

FIXTURE_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"
# built-in task -> (fixture file, its place in the shared data's layout)
FIXTURE_FILES = {
    "gsm8k": ("gsm8k_tiny.jsonl", "gsm8k/test.jsonl"),
    "arc_easy": ("arc_easy_tiny.jsonl", "arc_easy/test.jsonl"),
    "hellaswag": ("hellaswag_tiny.jsonl", "hellaswag/validation.jsonl"),
}


def fixture_data_dir(folder: Path) -> Path:
    """``folder`` holding the tiny fixture files where ``load_task_rows(task, data_dir=folder)`` looks for them."""
    for source, target in FIXTURE_FILES.values():
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURE_DATA / source, folder / target)
    return folder
