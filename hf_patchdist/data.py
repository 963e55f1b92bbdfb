"""Data loading for the CLI and a small built-in data set for the demo.

The built-in set holds arithmetic word problems generated deterministically from a seed, with
expert answers written in a terse, equation-only style unlike an instruct model's own (what makes
the distribution mismatch visible), ending in GSM8K's ``#### n`` line.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any


BUILTIN_DATASET = "builtin:arithmetic"

_NAMES = ["Ana", "Ben", "Chloe", "Dev", "Eva", "Farid", "Gina", "Hugo", "Iris", "Jon", "Kemi", "Liam"]
_ITEMS = [("apples", "basket"), ("pencils", "box"), ("stickers", "sheet"), ("cookies", "tray"), ("marbles", "bag")]


def _problem(rng: random.Random) -> dict[str, str]:
    name = rng.choice(_NAMES)
    item, unit = rng.choice(_ITEMS)
    kind = rng.randrange(3)
    if kind == 0:
        units, per, extra = rng.randint(2, 9), rng.randint(3, 12), rng.randint(1, 20)
        total = units * per + extra
        question = f"{name} has {units} {unit}s with {per} {item} in each {unit} and {extra} loose {item}. How many {item} does {name} have?"
        answer = f"{units}*{per}=<<{units}*{per}={units * per}>>{units * per}\n{units * per}+{extra}=<<{units * per}+{extra}={total}>>{total}\n#### {total}"
    elif kind == 1:
        start, given, bought = rng.randint(20, 60), rng.randint(1, 19), rng.randint(2, 15)
        left = start - given
        total = left + bought
        question = f"{name} had {start} {item}, gave {given} to a friend and then bought {bought} more. How many {item} does {name} have now?"
        answer = f"{start}-{given}=<<{start}-{given}={left}>>{left}\n{left}+{bought}=<<{left}+{bought}={total}>>{total}\n#### {total}"
    else:
        friends, per, price = rng.randint(2, 6), rng.randint(2, 8), rng.randint(2, 9)
        count = friends * per
        cost = count * price
        question = f"{name} buys {per} {item} for each of {friends} friends. Each of the {item} costs ${price}. How much does {name} spend in dollars?"
        answer = f"{friends}*{per}=<<{friends}*{per}={count}>>{count}\n{count}*{price}=<<{count}*{price}={cost}>>{cost}\n#### {cost}"
    return {"question": question, "answer": answer}


def builtin_arithmetic_dataset(num_rows: int = 32, seed: int = 0) -> Any:
    """The demo data set: ``num_rows`` seeded arithmetic word problems in GSM8K's columns."""
    from datasets import Dataset

    rng = random.Random(seed)
    rows = [_problem(rng) for _ in range(num_rows)]
    return Dataset.from_list(rows)


def load_any_dataset(source: str | None, *, split: str | None = None, config_name: str | None = None, limit: int | None = None) -> Any:
    """Load a data set from the built-in set (None), a local JSONL/JSON/Parquet/CSV file, a folder
    written by ``save_to_disk``, or a Hub id.

    Raises:
        FileNotFoundError / ValueError: Naming the source when it cannot be read.
    """
    import datasets

    if source is None or source == BUILTIN_DATASET:
        dataset = builtin_arithmetic_dataset(num_rows=limit or 32)
    else:
        path = Path(source)
        if path.is_dir() and any((path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json")):
            dataset = datasets.load_from_disk(str(path))
            if isinstance(dataset, datasets.DatasetDict):
                dataset = dataset[split or "train"]
                split = None
        elif path.is_file():
            suffix = path.suffix.lower().lstrip(".")
            builder = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}.get(suffix)
            if builder is None:
                raise ValueError(f"Cannot read {path}: expected a .jsonl, .json, .parquet or .csv file, or a saved data set folder.")
            dataset = datasets.load_dataset(builder, data_files=str(path), split=split or "train")
            split = None
        elif path.exists():
            dataset = datasets.load_dataset(str(path), split=split or "train")
            split = None
        else:
            try:
                dataset = datasets.load_dataset(source, config_name, split=split or "train")
            except Exception as error:  # datasets raises many types for an unreachable id
                raise FileNotFoundError(
                    f"Could not load the data set {source!r}: it is not a local file or folder, and the Hub could not "
                    f"provide it ({type(error).__name__}: {error})."
                ) from error
            split = None
    if limit is not None and len(dataset) > limit:
        dataset = dataset.select(range(limit))
    return dataset
