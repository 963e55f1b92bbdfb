"""The summary side of ``benchmarks/forgetting.py``: seeds pooled into a mean and a range, the goal checks of
issue 16 part by part, the wall-time estimate of a run, and the report's extra tables.

Goals (issue 16), on the means over seeds:

* **RL patch against plain SFT, and against SFT on the annotation-stripped answers** (each reported):
  ``kl_general`` at most 0.5x the reference's; ``forgetting_mean`` no higher; GSM8K accuracy no lower than the
  reference's minus one item per 100 (0.01); held-out answer NLL gain at least 0.9x the reference's; target NLL
  ordered reference (the answers it trained on) > prompted patch > RL patch.
* **RL patch against SDFT**: ``kl_general`` no higher at an equal or higher held-out answer NLL gain.

``meets_goal`` is true only when every part of the three comparisons is met. A part whose inputs are missing,
or whose reference has no positive gain to compare with, is not met (it cannot be told). The control, measured in
the same run, is plain SFT's second seed checked against its first with the same rules: the same method cannot
halve its own drift, so it must fail (``control_fails_goal``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

KL_RATIO_GOAL = 0.5
GSM8K_TOLERANCE = 0.01  # one test item per 100
NLL_GAIN_RATIO_GOAL = 0.9
_EPS = 1e-9  # accuracies are k/n: keep "no worse" from failing on float rounding

# Seconds per unit on this project's 2-core CPU, for --estimate; a run replaces them with its own as soon as it has
# some. SFT and evaluation: the first run (issue 7; float32, 2 threads): 549 s for 16 steps of 8 rows, and
# 544 s per evaluation with 50 GSM8K items (more with 100). SDFT: one step of each, side by side in one process on
# 8 rows of GSM8K train[:8] (bf16 autocast, 1 thread, nice 10, load average 4.5-5.8 from other jobs): SFT 46.8 s,
# SDFT 122.2 s with samples of 256 tokens at most (mean 197: at temperature 1 most samples of the 135M model run
# long), i.e. 2.6x SFT's step; so 2.6 x 34 s. Rewriting: best-of-8 is about 3.8x best-of-1's 0.78 s per row
# (rewrite_throughput.json).
DEFAULT_RATES = {
    "sft_step": 34.0,
    "sdft_step": 89.0,
    "eval": 700.0,
    "kl_reference": 100.0,  # pi_0 samples of the KL measures, once
    "rewrite_row": 3.0,
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def aggregate_seeds(records: Sequence[Mapping[str, Any]], keys: Iterable[str]) -> dict[str, Any]:
    """One method's runs over seeds as one summary row.

    Each key takes the mean of its values when every run has a number for it, the value itself when the runs
    agree on it (counts, learning rate) or only one run has it; with two or more runs, ``per_seed`` keeps every
    run's numbers and ``seed_range`` their lowest and highest (the error bar of the plot).

    Args:
        records: The stage records of one method, one per seed, first seed first.
        keys: The keys to keep.
    """
    if not records:
        raise ValueError("aggregate_seeds needs at least one record")
    row: dict[str, Any] = {}
    per_seed: dict[str, list[float]] = {}
    for key in keys:
        values = [r.get(key) for r in records if key in r]
        if not values:
            continue
        numbers = [_number(v) for v in values]
        if len(values) == len(records) and all(n is not None for n in numbers) and len(set(numbers)) > 1:
            row[key] = sum(numbers) / len(numbers)
            per_seed[key] = numbers
        else:
            row[key] = values[0]
    row["seeds"] = [r.get("seed") for r in records]
    if len(records) > 1:
        row["per_seed"] = per_seed
        row["seed_range"] = {key: [min(v), max(v)] for key, v in per_seed.items()}
    return row


def seed_spread(methods: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """The ``(low, high)`` error bars of the plot: each method's ``seed_range``."""
    return {name: {k: (v[0], v[1]) for k, v in m.get("seed_range", {}).items()} for name, m in methods.items() if m.get("seed_range")}


def _part(value: Any, met: bool | None, goal: str, **extra: Any) -> dict[str, Any]:
    return {"value": value, "goal": goal, "met": bool(met), **({"cannot_tell": True} if met is None else {}), **extra}


def goal_against(candidate: Mapping[str, Any], reference: Mapping[str, Any], prompted: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parts of the goal of ``candidate`` (the RL patch) against a plain-SFT ``reference``, and ``meets_goal``.

    ``prompted`` (the prompted patch) is needed for the target-NLL order only; without it that part is left out.
    """
    parts: dict[str, dict[str, Any]] = {}
    kl_c, kl_r = _number(candidate.get("kl_general")), _number(reference.get("kl_general"))
    ratio = kl_c / kl_r if kl_c is not None and kl_r else None
    parts["kl_general_ratio"] = _part(ratio, None if ratio is None else ratio <= KL_RATIO_GOAL, f"<= {KL_RATIO_GOAL}", candidate=kl_c, reference=kl_r)
    f_c, f_r = _number(candidate.get("forgetting_mean")), _number(reference.get("forgetting_mean"))
    parts["forgetting_no_worse"] = _part(
        None if f_c is None or f_r is None else f_c - f_r, None if f_c is None or f_r is None else f_c <= f_r + _EPS,
        "candidate - reference <= 0", candidate=f_c, reference=f_r,
    )
    a_c, a_r = _number(candidate.get("gsm8k")), _number(reference.get("gsm8k"))
    parts["gsm8k_no_worse"] = _part(
        None if a_c is None or a_r is None else a_c - a_r, None if a_c is None or a_r is None else a_c >= a_r - GSM8K_TOLERANCE - _EPS,
        f">= -{GSM8K_TOLERANCE} (one item per 100)", candidate=a_c, reference=a_r,
    )
    g_c, g_r = _number(candidate.get("heldout_nll_gain")), _number(reference.get("heldout_nll_gain"))
    gain_ratio = g_c / g_r if g_c is not None and g_r is not None and g_r > 0 else None
    parts["heldout_nll_gain_ratio"] = _part(
        gain_ratio, None if gain_ratio is None else gain_ratio >= NLL_GAIN_RATIO_GOAL, f">= {NLL_GAIN_RATIO_GOAL}", candidate=g_c, reference=g_r
    )
    if prompted is not None:
        order = [_number(reference.get("target_nll")), _number(prompted.get("target_nll")), _number(candidate.get("target_nll"))]
        known = all(v is not None for v in order)
        parts["target_nll_order"] = _part(
            order, (order[0] > order[1] > order[2]) if known else None, "reference > prompted patch > RL patch"
        )
    return {"parts": parts, "meets_goal": all(p["met"] for p in parts.values())}


def goal_against_sdft(candidate: Mapping[str, Any], sdft: Mapping[str, Any]) -> dict[str, Any]:
    """RL patch against SDFT: ``kl_general`` no higher, held-out answer NLL gain no lower."""
    kl_c, kl_s = _number(candidate.get("kl_general")), _number(sdft.get("kl_general"))
    g_c, g_s = _number(candidate.get("heldout_nll_gain")), _number(sdft.get("heldout_nll_gain"))
    parts = {
        "kl_general_no_higher": _part(
            None if kl_c is None or kl_s is None else kl_c - kl_s, None if kl_c is None or kl_s is None else kl_c <= kl_s + _EPS,
            "candidate - sdft <= 0", candidate=kl_c, sdft=kl_s,
        ),
        "heldout_nll_gain_no_lower": _part(
            None if g_c is None or g_s is None else g_c - g_s, None if g_c is None or g_s is None else g_c >= g_s - _EPS,
            "candidate - sdft >= 0", candidate=g_c, sdft=g_s,
        ),
    }
    return {"parts": parts, "meets_goal": all(p["met"] for p in parts.values())}


def goal_checks(methods: Mapping[str, Mapping[str, Any]], sft_seeds: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Every comparison of the goal on the summary rows, the overall ``meets_goal`` and the control.

    Args:
        methods: Summary rows (means over seeds) by method name.
        sft_seeds: Plain SFT's per-seed stage records, first seed first (the control needs two).
    """
    rl = methods.get("rl_patch")
    prompted = methods.get("prompted_patch")
    checks: dict[str, Any] = {}
    for reference in ("sft", "sft_stripped"):
        checks[f"rl_patch_vs_{reference}"] = (
            goal_against(rl, methods[reference], prompted) if rl is not None and reference in methods else {"missing": True, "meets_goal": False}
        )
    checks["rl_patch_vs_sdft"] = goal_against_sdft(rl, methods["sdft"]) if rl is not None and "sdft" in methods else {"missing": True, "meets_goal": False}
    control = goal_against(sft_seeds[1], sft_seeds[0]) if len(sft_seeds) > 1 else None
    return {
        "checks": checks,
        "meets_goal": all(c["meets_goal"] for c in checks.values()),
        "control": {"what": "plain SFT's second seed against its first, same rules", **control} if control else None,
        "control_fails_goal": None if control is None else not control["meets_goal"],
    }


def estimate_run(
    *,
    train_rows: int,
    batch_size: int,
    sweep: Sequence[tuple[float, int]],
    budget: tuple[float, int],
    methods: Sequence[str],
    seeds: Sequence[int],
    seeded_methods: Iterable[str],
    rates: Mapping[str, float] | None = None,
    max_steps: int = -1,
) -> dict[str, Any]:
    """Seconds a whole run takes from scratch, stage by stage.

    Args:
        train_rows: GSM8K training rows.
        batch_size: Rows per optimizer step.
        sweep: Plain-SFT sweep runs as ``(lr, max_epochs)``; every epoch is a sweep point with its evaluation.
        budget: ``(lr, epochs)`` of the comparison (plain SFT's first seed is the sweep's run when it is a sweep point).
        methods: Methods of the run (``base`` included or not).
        seeds: Training seeds; the first one for every method, all of them for ``seeded_methods``.
        seeded_methods: Methods trained with every seed.
        rates: Seconds per unit (:data:`DEFAULT_RATES` keys); missing keys take the defaults.
        max_steps: Cap on steps per run (-1: none).
    """
    rate = {**DEFAULT_RATES, **(rates or {})}
    steps = math.ceil(train_rows / batch_size)
    seeded = set(seeded_methods)

    def run_steps(epochs: int) -> int:
        total = steps * epochs
        return min(total, max_steps) if max_steps > 0 else total

    stages: list[dict[str, Any]] = []
    if "base" in methods:
        stages.append({"stage": "base (KL reference + evaluation)", "seconds": rate["kl_reference"] + rate["eval"]})
    sweep_points = {(lr, k) for lr, epochs in sweep for k in range(1, epochs + 1)}
    for lr, epochs in sweep:
        stages.append({"stage": f"sweep sft lr {lr:g} x{epochs} epoch(s)", "seconds": run_steps(epochs) * rate["sft_step"] + epochs * rate["eval"]})
    for method in methods:
        if method == "base":
            continue
        for index, seed in enumerate(seeds if method in seeded else seeds[:1]):
            if method == "sft" and index == 0 and tuple(budget) in sweep_points:
                continue  # the sweep's own run
            step = rate["sdft_step"] if method == "sdft" else rate["sft_step"]
            seconds = run_steps(budget[1]) * step + rate["eval"]
            if method.endswith("_patch") and index == 0:
                seconds += train_rows * rate["rewrite_row"]  # later seeds read the patched set from the cache
            stages.append({"stage": f"{method} seed {seed}", "seconds": seconds})
    total = sum(s["seconds"] for s in stages)
    return {"train_rows": train_rows, "steps_per_epoch": steps, "stages": stages, "total_s": total, "total_h": total / 3600, "rates": rate}


def _fmt(value: Any, fmt: str = "{:.3f}") -> str:
    number = _number(value)
    return "–" if number is None else fmt.format(number)


SEED_KEYS = ("gsm8k", "heldout_answer_nll", "arc_easy", "hellaswag", "forgetting_mean", "kl_from_base", "kl_general", "target_nll")


def extra_markdown(summary: Mapping[str, Any]) -> list[str]:
    """The report's tables beyond the main one: seeds, wall times and what each method trained on, the goals."""
    methods = summary["methods"]
    lines: list[str] = []
    seeded = {name: m for name, m in methods.items() if len(m.get("seeds") or []) > 1}
    if seeded:
        lines += ["## Seeds (the main table holds their mean; the plot's error bars span lowest to highest)", ""]
        lines += ["| method | seed | " + " | ".join(SEED_KEYS) + " |", "|" + "---|" * (len(SEED_KEYS) + 2)]
        for name, m in seeded.items():
            for i, seed in enumerate(m["seeds"]):
                values = [m["per_seed"][k][i] if k in m.get("per_seed", {}) else m.get(k) for k in SEED_KEYS]
                lines.append(f"| {name} | {seed} | " + " | ".join(_fmt(v) for v in values) + " |")
            lines.append(f"| {name} | range | " + " | ".join(_fmt(m["seed_range"][k][1] - m["seed_range"][k][0]) if k in m.get("seed_range", {}) else "0" for k in SEED_KEYS) + " |")
        lines.append("")
    lines += ["## Wall time and what each method trained on", "",
              "Seconds per seed; a patch's later seeds read the patched set from the cache. Target NLL: mean over seeds.", "",
              "| method | seeds | train s | rewrite s | target NLL under pi_0 | of |", "|---|---|---|---|---|---|"]
    trained_on = {"sft": "expert answers", "dft": "expert answers", "sft_stripped": "annotation-stripped expert answers",
                  "sdft": "its on-policy samples", "prompted_patch": "patched set", "rl_patch": "patched set",
                  "stripped_patch": "patched set of the annotation-stripped answers"}
    for name, m in methods.items():
        if name == "base":
            continue
        seconds = {key: ", ".join(_fmt(v, "{:.0f}") for v in m.get("per_seed", {}).get(key, [m.get(key)])) for key in ("train_s", "rewrite_s")}
        lines.append(f"| {name} | {', '.join(str(s) for s in m.get('seeds') or [])} | {seconds['train_s']} | {seconds['rewrite_s']} | "
                     f"{_fmt(m.get('target_nll'))} | {trained_on.get(name, '')} |")
    if "sdft" in methods:
        lines += ["", f"SDFT: {summary.get('config', {}).get('sdft', {}).get('generator', '')}."]
    lines.append("")
    goals = summary.get("goals")
    if goals:
        lines += [f"## Goals (meets_goal: {goals['meets_goal']}; control fails: {goals['control_fails_goal']})", "", "| comparison | part | value | goal | met |", "|---|---|---|---|---|"]
        for comparison, check in goals["checks"].items():
            if check.get("missing"):
                lines.append(f"| {comparison} | (a method is missing) | – | – | False |")
                continue
            for part, result in check["parts"].items():
                value = result["value"]
                shown = " > ".join(_fmt(v) for v in value) if isinstance(value, list) else _fmt(value)
                lines.append(f"| {comparison} | {part} | {shown} | {result['goal']} | {result['met']}{' (cannot tell)' if result.get('cannot_tell') else ''} |")
        lines.append("")
    return lines
