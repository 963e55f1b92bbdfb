"""How long ``import hf_patchdist`` takes, next to what the trainers and the heavy libraries cost.

Each statement runs in a fresh interpreter (``python -X importtime`` is not used: it slows imports down), several
times; the median wall time of the whole process is reported, minus the median of a bare ``python -c pass``.

Goal: ``import hf_patchdist`` under 1 s. Control, in the same run: touching every public name (what the 0.1
``__init__`` did eagerly, importing TRL with the trainers) must miss that goal, or the measurement cannot tell.

Prints one JSON object on its last line and writes it to ``benchmarks/results/import_time.json``.

Usage:
    python benchmarks/import_time.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "benchmarks" / "results" / "import_time.json"
GOAL_SECONDS = 1.0

STATEMENTS = {
    "python": "pass",
    "hf_patchdist": "import hf_patchdist",
    "hf_patchdist.verifiers": "import hf_patchdist.verifiers",
    "torch": "import torch",
    "transformers": "import transformers",
    "datasets": "import datasets",
    "trl": "import trl",
    "trainers": "from hf_patchdist import DistributionPatchTrainer, RewriterTrainer",
    # The control: every public name, as the eager 0.1 __init__ imported them.
    "all_public_names_eager": "import hf_patchdist as h; [getattr(h, n) for n in h.__all__]",
}


def _time(statement: str, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    # One warm-up of each, so the first measured run does not pay for a cold file cache.
    for statement in STATEMENTS.values():
        subprocess.run([sys.executable, "-c", statement], check=True, cwd=REPO)
    raw = {name: _time(statement, args.repeats) for name, statement in STATEMENTS.items()}
    interpreter = raw["python"][0]
    seconds = {name: round(median - interpreter, 3) for name, (median, _) in raw.items() if name != "python"}
    result = {
        "benchmark": "import_time",
        "unit": "seconds over a bare interpreter start, median of fresh processes",
        "repeats": args.repeats,
        "interpreter_start_s": round(interpreter, 3),
        "seconds": seconds,
        "goal": f"import hf_patchdist < {GOAL_SECONDS} s",
        "top_level_s": seconds["hf_patchdist"],
        "meets_goal": seconds["hf_patchdist"] < GOAL_SECONDS,
        "control_all_public_names_s": seconds["all_public_names_eager"],
        "control_fails_goal": seconds["all_public_names_eager"] >= GOAL_SECONDS,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
