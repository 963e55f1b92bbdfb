"""Does the gate still accept the expert answers? Verify every GSM8K expert answer against itself, before and after.

Each expert answer is verified as a candidate against itself (its question given) through three gates:

* ``stage_ii``: :func:`~hf_patchdist.verifiers.stage_ii_gate` of :data:`~hf_patchdist.verifiers.GRPO_GATE`, the
  gate of the Rewriter;
* ``grpo``: :data:`~hf_patchdist.verifiers.GRPO_GATE` itself, whose copy check must fail every one of them (a
  candidate that is the expert answer is the cheapest feasible candidate of GRPO, not a rewrite);
* ``grpo_without_copy``: the GRPO gate with its copy check off (``max_reference_copy=None``): every other check
  of the GRPO gate, which an expert answer should pass.

The same is computed by the gate of a baseline commit (``--baseline``, default ``main``), run in a subprocess on
a ``git archive`` of that commit, so that both verdicts come from one run; the result lists every verdict that
changed, by gate and by (old reason, new reason), with examples. A verdict that changes on an expert answer is a
false rejection unless there is a reason it is right.

The accepted rewrites stored by ``benchmarks/rewriter_vs_prompted.py`` (``--rewrites``; prompted and RL rewriter,
GSM8K ``train[800:1000]``, accepted by the Stage II gate of their day) are verified against their expert answers by
the same gates, before and after, every changed verdict listed: what the changed gate does to real candidates.

Goals (``meets_goal``; each part in ``goals``): under the GRPO gate every expert answer fails as a copy
(``copies_reference``); under the Stage II gate and the GRPO gate without its copy check, at most 1% of the
expert answers change verdict against the baseline for any reason but ``ungrounded_operand``, and at most 3% to
``ungrounded_operand`` (gate 4: expert answers that compute with a number they never wrote, a step done in the head); and the leak examples (``LEAKS`` below) all fail the gate
each passed before. Control, in the same run: the baseline gate passes at least one leak example
(``goals["control_baseline_passes_a_leak"]``), or the leak goal could not tell a fixed gate from an unchanged one.

Prints one JSON object on its last line and writes the same object to ``benchmarks/results/gate_self_check.json``.

    python benchmarks/gate_self_check.py                       # all 8,792 answers, baseline main
    python benchmarks/gate_self_check.py --limit 500 --baseline 66c9efe
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ("/work/shared/data/gsm8k/train.jsonl", "/work/shared/data/gsm8k/test.jsonl")
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "gate_self_check.json"
DEFAULT_REWRITES = REPO / "benchmarks" / "results" / "rewriter_vs_prompted_examples.json"
MAX_CHANGED_SHARE = 0.01
# Gate 4's grounded-operand check fails expert answers that compute with a number they never wrote down (a step done
# in the head, a fact they know): the issue allows at most 3% of them.
MAX_UNGROUNDED_SHARE = 0.03
EXAMPLES_PER_CHANGE = 5

NATALIA_QUESTION = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
NATALIA_ANSWER = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)
LEAKS = {
    "identity_step": ("grpo", "72 + 0 = 72\n#### 72"),
    "skipped_intermediate_step": ("grpo", "48 + 24 = 72\n#### 72"),
    "two_words_edited": (
        "grpo",
        "Natalia sold 48/2 = 24 clips in the month of May.\nNatalia sold 48+24 = 72 clips in total in April and May.\n#### 72",
    ),
    "annotations_left_in": ("grpo", NATALIA_ANSWER),
    # Gate 3: the final sum skipped and its result only stated, while the expert computes it (found in best-of-8).
    "answer_only_stated": ("stage_ii", "In May she sold 48 / 2 = 24 clips.\nSo she sold 72 clips in April and May.\n#### 72"),
    # Gate 3: every equation holds and the #### line matches, but the reasoning concludes something else (GRPO, K = 8).
    "contradicting_conclusion": ("grpo", "In May: 48 / 2 = 24 clips.\nIn all: 48 + 24 = 72 clips, 72 + 24 = 96.\nThe final answer is 96 clips.\n#### 72"),
    # Gate 4: the 24 taken from the expert answer, never derived (Stage II has no step count to catch it).
    "ungrounded_operand": ("stage_ii", "Natalia sold 48 clips in April, and 48 + 24 = 72 clips in April and May.\n#### 72"),
    # Gate 6: a chain of "=" whose last link is false ("24 - 8 = 16 = 19" in the best-of-32 demo).
    "false_equation_chain": ("stage_ii", "In May she sold 48 / 2 = 24 = 30 clips.\nIn all: 48 + 24 = 72 clips.\n#### 72"),
    # Gate 6: a line that is only two different numbers ("4*8 = 32 / 32 = 160 / #### 160" in the demo).
    "bare_false_equation": ("stage_ii", "In May she sold 48 / 2 = 24 clips.\n24 = 30\nIn all: 48 + 24 = 72 clips.\n#### 72"),
    # Gate 6: a second answer line in the reasoning, kept in the target ("#### 13 = 9 + 4\n#### 13" in the demo).
    "extra_final_answer_line": ("stage_ii", "In May she sold 48 / 2 = 24 clips.\nIn all: 48 + 24 = 72 clips.\n#### 72 = 48 + 24\n#### 72"),
    # Gate 6: one unknown given two values (an accepted RFT rewrite: "Sam ran X = 6 / 3 = 2 miles / He walked X = 2 * 6 = 12").
    "unknown_given_two_values": ("stage_ii", "In May she sold X = 48 / 2 = 24 clips.\nIn all she sold X = 48 + 24 = 72 clips.\n#### 72"),
    # Gate 6: an algebra equation never solved, its unknown given the answer ("3x + 7 = 27" in the demo).
    "unsolved_algebra": ("stage_ii", "In May she sold 48 / 2 = 24 clips.\nLet x be the total: x - 48 = 30, so x = 72 clips.\n#### 72"),
    # Gate 7: a fact of the question restated with another number, the arithmetic right (the RL patch of train[:400]:
    # "Bekah had to read 113 pages" for the question's 408).
    "misquoted_fact": ("stage_ii", "Natalia sold clips to 40 of her friends in April.\nIn May she sold 48 / 2 = 24 clips.\nIn all: 48 + 24 = 72 clips.\n#### 72"),
    # Gate 8, all four from the prompted best-of-8 patch of train[:400] under gate 7. A false equation after "grew by"
    # or "increased by", which was skipped as the tail of a longer expression ("increased by 200*$3 = $1500").
    "false_equation_after_by": ("stage_ii", "In May she sold 48 / 2 = 24 clips.\nIn all: 48 + 24 = 72 clips, so her sales grew by 24 * 2 = 50 clips.\n#### 72"),
    # Gate 8: a sum "rounded" to a whole number ("1/2+1 = 2 cookies").
    "rounded_sum": ("stage_ii", "In May she sold 48 / 2 = 24 clips.\nIn all: 48 + 24 + 1/2 = 72 clips.\n#### 72"),
    # Gate 8: a quotient rounded where the expert computes exactly ("16 / 6 = 3 packs" for the expert's 18 / 6 = 3).
    "rounded_where_expert_is_exact": ("stage_ii", "In May she sold 48 / 2 = 24 clips, 24 / 48 = 1 for each clip of April.\nIn all: 48 + 24 = 72 clips.\n#### 72"),
    # Gate 8: an intermediate result of the expert never computed ("Lana can eat 6 - 3 = 3 candies / #### 3").
    "missing_intermediate_result": ("stage_ii", "She sold 48 + 48 / 2 = 72 clips in April and May.\n#### 72"),
    # Gate 9: a final answer in another form than the data set's ("The answer is 10." for "#### 10"), amplified by expert iteration.
    "final_answer_in_another_format": ("stage_ii", "In May she sold 48 / 2 = 24 clips.\nIn all she sold 48 + 24 = 72 clips.\nThe answer is 72."),
    # Gate 9: an ascending "a-b" read as a range while it states a result ("The total number of cars is 300-400 = 300").
    "subtraction_read_as_range": ("stage_ii", "In May she sold 48/2 = 24 clips.\nIn all she sold 48+24 = 72 clips.\nSo the number of clips is 24-48 = 72.\n#### 72"),
    # Gate 10: the final answer only as the first operand after "=" ("4/(1/8) = 4*8 = 32 meatballs. #### 4", accepted from the
    # committed RFT rewriter): read as a running computation's result although that reading is false.
    "operand_after_equals_read_as_result": ("stage_ii", "In May she sold 48 / 2 = 24 clips.\nTwo Aprils would be 48 + 48 + 48 = 72 * 2 = 144 clips.\n#### 72"),
    # Gate 11, all three from reading accepted best-of-8 rewrites of the trained rewriter. A mixed number on the left
    # made the equation unreadable, so it was skipped ("21 * 1 1/2 = 21 birds").
    "mixed_number_on_the_left": ("stage_ii", "In May she sold 48 / 2 = 24 clips.\nIn all: 48 + 24 = 72 clips, 2 * 1 1/2 = 2 boxes of them.\n#### 72"),
    # Gate 11: a false equation within the old relative tolerance of 1e-3 ("825-.2 = 825 - 165").
    "false_equation_within_tolerance": (
        "stage_ii",
        "In May she sold 48 / 2 = 24 clips.\nIn all: 48 + 24 = 72 clips.\nOver 24 days that is 72 * 24 = 1728 clips, and 1728 + 1 = 1728 with the spare.\n#### 72",
    ),
    # Gate 11: an equation no value of its unknown solves ("x = 7 + x" four times, then "#### 7").
    "unknown_that_cancels": ("stage_ii", "In May she sold 48 / 2 = 24 clips.\nIn all: 48 + 24 = 72 clips.\nx = 7 + x\nx = 7 + x\n#### 72"),
    # Gate 12, all three from reading the committed rewriter's RFT training data. A number grounded by reading a known
    # value times or divided by 100 where nothing is in cents ("20-12 = 8" with 12 = 1200 minutes / 100).
    "hundredfold_of_a_known_value": (
        "stage_ii",
        "In May she sold 48 / 2 = 24 clips.\nIn all she sold 48 + 24 = 72 clips, and 72 - 50 = 22 of them went to friends with more than 50.\n#### 72",
    ),
    # Gate 12: a final answer "derived" as the first number of an expression in an unknown ("C = 30 * C / #### 30").
    "answer_in_an_expression_of_an_unknown": ("stage_ii", "In May she sold 48 / 2 = 24 clips.\nIn all she sold C = 72 * C clips.\n#### 72"),
    # Gate 12: an equation inside a parenthetical remark, skipped unread ("(28 items * 100% = 28 items)").
    "equation_in_parentheses": ("stage_ii", "In May she sold 48 / 2 = 24 clips (48 clips / 2 = 25 clips).\nIn all: 48 + 24 = 72 clips.\n#### 72"),
    # Gate 13: unit labels in parentheses made an equation unreadable ("10 (Pets) * 5 (Groceries) = 50 (Groceries)", kept
    # by make demo under gate 12 with its 10 never computed).
    "parenthesized_unit_labels": ("stage_ii", "In May she sold 48 / 2 = 24 clips.\nIn all: 48 (April) + 24 (May) = 70 (clips), that is 48 + 24 = 72.\n#### 72"),
}
"""Candidates for the GSM8K "Natalia" row that passed a gate (named beside each): of issue 14 (GRPO gate) and
of the best-of-K work (Stage II gate)."""


def _relative(path: str) -> str:
    """``path`` relative to the repository (the shared data as ../shared/...): results must not name this host's folders."""
    return os.path.relpath(Path(path).resolve(), REPO)


def gates() -> dict[str, dict]:
    from hf_patchdist.verifiers import GRPO_GATE, stage_ii_gate

    return {
        "stage_ii": stage_ii_gate(GRPO_GATE),
        "grpo": dict(GRPO_GATE),
        "grpo_without_copy": {**GRPO_GATE, "max_reference_copy": None},
    }


def verdicts(rows: list[dict], rewrites: list[dict]) -> dict:
    """Verdicts of the imported package's gates: {gate: [reason or "" per row]}, the same for the rewrites
    (candidate against its expert answer), and the leaks under the GRPO gate."""
    from hf_patchdist.verifiers import get_verifier

    out: dict = {"gates": {}, "rewrites": {}, "leaks": {}, "seconds": {}}
    for name, gate in gates().items():
        verifier = get_verifier(gate)
        start = time.perf_counter()
        out["gates"][name] = [verifier(r["answer"], r["answer"], question=r["question"]).reason for r in rows]
        out["seconds"][name] = round(time.perf_counter() - start, 2)
        out["rewrites"][name] = [verifier(r["candidate"], r["answer"], question=r["question"]).reason for r in rewrites]
    out["leaks"] = {
        name: get_verifier(gates()[gate])(text, NATALIA_ANSWER, question=NATALIA_QUESTION).reason for name, (gate, text) in LEAKS.items()
    }
    return out


def read_rows(paths: list[str], limit: int | None) -> list[dict]:
    rows = []
    for path in paths:
        with open(path) as handle:
            for index, line in enumerate(handle):
                if line.strip():
                    row = json.loads(line)
                    rows.append({"file": Path(path).name, "index": index, "question": row["question"], "answer": row["answer"]})
    return rows[:limit] if limit else rows


def read_rewrites(path: str | None, rows: list[dict]) -> list[dict]:
    """The accepted rewrites of ``benchmarks/results/rewriter_vs_prompted_examples.json`` with their expert answers."""
    if not path or not Path(path).is_file():
        return []
    expert = {row["question"]: row["answer"] for row in rows}
    stored = json.loads(Path(path).read_text())
    # rewriter_vs_prompted writes {"k1": {"prompted": [...], "rl": [...]}, "k8": {...}}; before K it wrote {"prompted": [...], ...}.
    groups = {f"{rewriter}_{k}": examples for k, by_rewriter in stored.items() for rewriter, examples in by_rewriter.items()} if all(
        isinstance(v, dict) for v in stored.values()
    ) else stored
    rewrites = []
    for rewriter, examples in groups.items():
        for example in examples:
            if example["question"] in expert:
                rewrites.append(
                    {"rewriter": rewriter, "question": example["question"], "candidate": example["answer"], "answer": expert[example["question"]]}
                )
    return rewrites


def baseline_verdicts(commit: str, args: argparse.Namespace) -> tuple[dict, str]:
    """Run this script's ``--verdicts-only`` mode on a ``git archive`` of ``commit``."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", commit], check=True, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "baseline.tar"
        subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), sha, "hf_patchdist"], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        out = Path(tmp) / "verdicts.json"
        command = [sys.executable, __file__, "--verdicts-only", str(out), "--limit", str(args.limit or 0), "--rewrites", args.rewrites, "--data", *args.data]
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": tmp})
        return json.loads(out.read_text()), sha


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=list(DEFAULT_DATA), help="GSM8K JSONL files (default train and test)")
    parser.add_argument("--limit", type=int, default=0, help="Only the first N answers (0: all)")
    parser.add_argument("--baseline", default="main", help="Commit whose gate gives the verdicts before (default main)")
    parser.add_argument("--rewrites", default=str(DEFAULT_REWRITES), help="Accepted rewrites to verify against their expert answers too")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--verdicts-only", default=None, help=argparse.SUPPRESS)  # the baseline child
    args = parser.parse_args(argv)
    rows = read_rows(args.data, args.limit or None)
    rewrites = read_rewrites(args.rewrites, read_rows(args.data, None))
    if args.verdicts_only:
        Path(args.verdicts_only).write_text(json.dumps(verdicts(rows, rewrites)))
        return {}

    sys.path.insert(0, str(REPO))
    start = time.perf_counter()
    before, baseline_sha = baseline_verdicts(args.baseline, args)
    after = verdicts(rows, rewrites)
    rewrite_changes = {}
    for name in after["rewrites"]:
        old, new = before["rewrites"].get(name, []), after["rewrites"][name]
        changed = [
            {"rewriter": r["rewriter"], "before": a or "pass", "after": b or "pass", "candidate": r["candidate"], "expert_answer": r["answer"]}
            for r, a, b in zip(rewrites, old, new)
            if a != b
        ]
        rewrite_changes[name] = {
            "passed_before": sum(not r for r in old),
            "passed_after": sum(not r for r in new),
            "changes": dict(Counter(f"{c['before']} -> {c['after']}" for c in changed).most_common()),
            "changed": changed,
        }
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "hf_patchdist"], capture_output=True, text=True).stdout.strip())

    per_gate = {}
    for name in after["gates"]:
        old, new = before["gates"].get(name), after["gates"][name]
        if old is None:
            continue
        changes: Counter = Counter()
        examples: dict[str, list] = {}
        for row, a, b in zip(rows, old, new):
            if a != b:
                key = f"{a or 'pass'} -> {b or 'pass'}"
                changes[key] += 1
                if len(examples.setdefault(key, [])) < EXAMPLES_PER_CHANGE:
                    examples[key].append({"file": row["file"], "index": row["index"], "answer": row["answer"]})
        per_gate[name] = {
            "passed_before": sum(not r for r in old),
            "passed_after": sum(not r for r in new),
            "reasons_after": dict(Counter(r or "pass" for r in new).most_common()),
            "changed": sum(changes.values()),
            "changed_share": round(sum(changes.values()) / len(rows), 5) if rows else 0.0,
            "changes": dict(changes.most_common()),
            "examples": examples,
        }
    def share(gate: str, ungrounded: bool) -> float:
        """Share of the answers whose verdict changed under ``gate``: to ``ungrounded_operand``, or any other way."""
        counts = per_gate[gate]["changes"]
        return sum(n for key, n in counts.items() if key.endswith("-> ungrounded_operand") == ungrounded) / max(len(rows), 1)

    goals = {
        "grpo_fails_every_copy": all(r == "copies_reference" for r in after["gates"]["grpo"]),
        "stage_ii_changed_at_most_1pct": share("stage_ii", False) <= MAX_CHANGED_SHARE,
        "grpo_without_copy_changed_at_most_1pct": share("grpo_without_copy", False) <= MAX_CHANGED_SHARE,
        "stage_ii_ungrounded_at_most_3pct": share("stage_ii", True) <= MAX_UNGROUNDED_SHARE,
        "grpo_without_copy_ungrounded_at_most_3pct": share("grpo_without_copy", True) <= MAX_UNGROUNDED_SHARE,
        "every_leak_fails": all(after["leaks"].values()),
        "control_baseline_passes_a_leak": not all(before["leaks"].values()),
    }
    result = {
        "benchmark": "gate_self_check",
        "data": [_relative(path) for path in args.data],
        "answers": len(rows),
        "baseline_commit": baseline_sha,
        "commit": head,
        "uncommitted_changes": dirty,
        "gates": gates(),
        "meets_goal": all(goals.values()),
        "goals": goals,
        "max_changed_share": MAX_CHANGED_SHARE,
        "max_ungrounded_share": MAX_UNGROUNDED_SHARE,
        "leaks_before": before["leaks"],
        "leaks_after": after["leaks"],
        "per_gate": per_gate,
        "rewrites": {"source": _relative(args.rewrites), "count": len(rewrites), "per_gate": rewrite_changes},
        "seconds_before": before["seconds"],
        "seconds_after": after["seconds"],
        "wall_s": round(time.perf_counter() - start, 1),
        "loadavg": os.getloadavg(),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
