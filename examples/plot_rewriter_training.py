"""Plot a GRPO rewriter run from its ``log.jsonl``: feasible fraction, reward and completion length per step.

    python examples/plot_rewriter_training.py runs/gsm8k-rewriter/log.jsonl docs/rewriter_training.png

A falling completion length together with a feasible fraction near 1.0 would mean the gate leaks
(the rewriter learning to emit bare answers); the plot makes that visible at a glance.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def moving_average(values: list[float], window: int = 5) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def main(log_path: str, png_path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "patch/feasible_fraction" in r]
    steps = [r["step"] for r in rows]
    series = {
        "feasible fraction (r_task)": [r["patch/feasible_fraction"] for r in rows],
        "mean total reward": [r["reward"] for r in rows],
        "mean completion length (tokens)": [r["completions/mean_length"] for r in rows],
    }
    # Logs written since PatchReward logs patch/rejected/<reason>: a fourth panel shows which gate
    # checks the rewrites fail, where a reward hack appears first (a reason that climbs).
    prefix = "patch/rejected/"
    reasons = sorted({key[len(prefix) :] for r in rows for key in r if key.startswith(prefix)})
    totals = {reason: sum(r.get(prefix + reason, 0.0) for r in rows) for reason in reasons}
    top = sorted(reasons, key=totals.__getitem__, reverse=True)[:6]
    fig, axes = plt.subplots(1, 4 if top else 3, figsize=(17 if top else 13, 3.6))
    for axis, (name, values) in zip(axes, series.items()):
        axis.plot(steps, values, "o", alpha=0.35, label="per step")
        axis.plot(steps, moving_average(values), "-", label="moving mean (5 steps)")
        axis.set_title(name)
        axis.set_xlabel("GRPO step")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    if top:
        axis = axes[3]
        for reason in top:
            axis.plot(steps, moving_average([r.get(prefix + reason, 0.0) for r in rows]), "-", label=reason)
        axis.set_title("rejected, by reason (moving mean)")
        axis.set_xlabel("GRPO step")
        axis.grid(alpha=0.3)
        axis.legend(loc="upper right", fontsize=7)
    fig.suptitle("Rewriter GRPO on SmolLM2-135M-Instruct (GSM8K train[1000:], K=4, 2 prompts/step)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    print(f"Wrote {png_path}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
