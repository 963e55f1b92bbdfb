"""Reports: a markdown table, the gain-vs-forgetting plot and JSON (NaN written as null)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..import_utils import is_matplotlib_available

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


_LM_EVAL_PREFIX = "lm_eval/"


def task_columns(methods: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """Columns of the tasks :data:`REPORT_COLUMNS` does not name: user tasks and lm-eval tasks.

    A task is a metric ``<task>`` with a ``<task>_n`` count next to it. A multiple-choice task (one
    with ``<task>_raw``) gets its headline accuracy, ``acc`` and, when there, the gold NLL per
    character; a math task its accuracy. lm-eval tasks (``lm_eval/<task>``) are titled ``lm-eval <task>``.
    """
    known = {key for key, _, _ in REPORT_COLUMNS} | {"heldout_answer_nll"}
    tasks: list[str] = []
    for metrics in methods.values():
        for key, value in metrics.items():
            task = key.removesuffix("_n")
            if key.endswith("_n") and isinstance(value, int) and task in metrics and task not in known and task not in tasks:
                tasks.append(task)
    columns = []
    for task in tasks:
        if task.startswith(_LM_EVAL_PREFIX):
            title = f"lm-eval {task.removeprefix(_LM_EVAL_PREFIX)}"
            columns += [(task, title, "{:.3f}"), (f"{task}_raw", f"{title} acc", "{:.3f}")]
        elif any(f"{task}_raw" in m for m in methods.values()):
            columns += [(task, f"{task} acc_norm", "{:.3f}"), (f"{task}_raw", f"{task} acc", "{:.3f}"), (f"{task}_gold_nll", f"{task} gold NLL/char", "{:.3f}")]
        else:
            columns.append((task, f"{task} acc", "{:.3f}"))
    return columns


def markdown_table(methods: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table, one row per method, of the columns any method has (user and lm-eval tasks before the forgetting)."""
    builtin = list(REPORT_COLUMNS)
    at = next(i for i, (key, _, _) in enumerate(builtin) if key == "forgetting_mean")
    candidates = builtin[:at] + task_columns(methods) + builtin[at:]
    columns = [c for c in candidates if any(c[0] in m for m in methods.values())]
    sizes = {key.removesuffix("_n"): value for m in methods.values() for key, value in m.items() if key.endswith("_n") and isinstance(value, int)}
    header = "| method | " + " | ".join(
        f"{title} (n={sizes[key]})" if key in sizes else title for key, title, _ in columns
    ) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for name, metrics in methods.items():
        lines.append(f"| {name} | " + " | ".join(_format(metrics.get(key), fmt) for key, _, fmt in columns) + " |")
    return "\n".join(lines)


_MARKERS = "osD^vPXhp<>*"


def plot_gain_vs_forgetting(
    methods: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    *,
    title: str | None = None,
    spread: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
) -> Path | None:
    """PNG: downstream gain against mean forgetting, one point per method, named in a legend below the panels.

    Left panel: GSM8K accuracy gain against ``forgetting_mean`` (the accuracy view). Right panel,
    when the continuous measures are there: held-out answer NLL gain against ``kl_general`` (the
    view that stays informative when accuracies are within noise). The good corner is top-left.
    Each method has its own colour and marker and is named in the legend, not next to its point:
    methods that land on the same spot would print their names over each other.

    Args:
        methods: Metrics per method (the point is the value, e.g. the mean over seeds).
        path: Where the PNG goes.
        title: Figure title.
        spread: Per method, per metric, the ``(low, high)`` range to draw as an error bar (e.g. the
            lowest and highest value over seeds); methods or metrics without one get no bar.

    Returns:
        The path, or None (and nothing is written) without matplotlib.
    """
    if not is_matplotlib_available():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spread = spread or {}
    views = [("forgetting_mean", "gsm8k_gain", "mean forgetting on general benchmarks\n(base - tuned) / base of acc_norm  [%]", "GSM8K accuracy gain  [points]", 100.0, 100.0)]
    if any("kl_general" in m and "heldout_nll_gain" in m for m in methods.values()):
        views.append(("kl_general", "heldout_nll_gain", "KL(base || tuned) per token on general chat prompts", "held-out GSM8K answer NLL gain  [nats/token]", 1.0, 1.0))
    fig, axes = plt.subplots(1, len(views), figsize=(6.2 * len(views), 5.6), squeeze=False)
    handles: dict[str, Any] = {}
    for ax, (xkey, ykey, xlabel, ylabel, xscale, yscale) in zip(axes[0], views):
        for index, (name, metrics) in enumerate(methods.items()):
            if metrics.get(xkey) is None or metrics.get(ykey) is None:
                continue
            x, y = metrics[xkey] * xscale, metrics[ykey] * yscale
            bars = spread.get(name, {})
            xerr = _error_bar(x, bars.get(xkey), xscale)
            yerr = _error_bar(y, bars.get(ykey), yscale)
            handles[name] = ax.errorbar(
                # Later methods get smaller markers on top: methods on the same spot stay visible as nested shapes
                # (no smaller than 9 points: a 7-point marker of the seventh method was hard to find).
                [x], [y], xerr=xerr, yerr=yerr, fmt=_MARKERS[index % len(_MARKERS)], markersize=max(15 - index, 9), color=f"C{index % 10}",
                markeredgecolor="white", markeredgewidth=0.8, ecolor=f"C{index % 10}", elinewidth=1.2, capsize=4, alpha=0.9,
                zorder=3 + index, label=name,
            )
        ax.axhline(0, color="0.6", lw=0.8)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.set_title("better: up and to the left", fontsize=9, color="0.35")
    notes = []
    sizes = ", ".join(
        f"{key.removesuffix('_n')} n={n}" for key, n in next(iter(methods.values()), {}).items() if key.endswith("_n") and isinstance(n, int)
    )
    if sizes:
        notes.append(f"items: {sizes}")
    if any(spread.values()):
        notes.append("error bars: lowest to highest value over seeds; point: their mean")
    fig.suptitle(title or "Downstream gain vs forgetting (each point: one fine-tuned model vs the base)")
    if handles:
        ncol = min(len(handles), 4)
        # matplotlib fills a legend column by column: reorder so that it reads row by row, in the methods' order.
        order = [i for c in range(ncol) for i in range(c, len(handles), ncol)]
        names = [list(handles)[i] for i in order]
        fig.legend([handles[n] for n in names], names, loc="lower center", ncol=ncol, fontsize=10, frameon=False, bbox_to_anchor=(0.5, 0.045))
    if notes:
        fig.text(0.5, 0.008, "; ".join(notes), ha="center", fontsize=8, color="0.35")
    rows = math.ceil(len(handles) / 4) if handles else 0  # legend rows below the panels
    fig.tight_layout(rect=(0, 0.06 + 0.045 * rows, 1, 0.95))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _error_bar(value: float, bounds: tuple[float, float] | None, scale: float) -> list[list[float]] | None:
    """``[[below], [above]]`` for matplotlib's ``errorbar`` from a ``(low, high)`` range around ``value``."""
    if bounds is None or any(b is None or (isinstance(b, float) and math.isnan(b)) for b in bounds):
        return None
    low, high = bounds[0] * scale, bounds[1] * scale
    return [[max(value - low, 0.0)], [max(high - value, 0.0)]]


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
    lm_eval_note = (
        "lm-eval columns: lm-evaluation-harness's acc_norm (acc where the task has none) and acc. "
        if any(key.startswith(_LM_EVAL_PREFIX) for m in methods.values() for key in m)
        else ""
    )
    text = f"# {title or 'Evaluation'}\n\n{markdown_table(methods)}\n\n" + (
        "acc_norm: accuracy by log-likelihood per character of each choice (headline); acc: by raw log-likelihood. "
        + lm_eval_note
        + "forgetting = (base - tuned) / base of acc_norm, averaged over the general benchmarks (negative: better than base). "
        "KL: forward KL(base || tuned) per token on continuations sampled from the base model. "
        "NLL columns: lower is better; an accuracy on n items has a standard error of about sqrt(p(1-p)/n).\n"
    )
    paths["markdown"] = output_dir / f"{name}.md"
    paths["markdown"].write_text(text)
    plot = plot_gain_vs_forgetting(methods, output_dir / "gain_vs_forgetting.png", title=title)
    if plot is not None:
        paths["plot"] = plot
    return paths
