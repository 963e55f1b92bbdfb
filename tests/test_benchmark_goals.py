"""The verdict logic of the benchmark scripts (no model is run): a goal can fail, and a run that
cannot resolve its effect does not count as meeting it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def memory_runs(baseline, patch, second_copy, scored=4):
    def records(peaks, answers):
        return [{"peak_rss_mb": p, "scored_answers": answers} for p in peaks]

    return {"baseline": records(baseline, 0), "patch": records(patch, scored), "second_copy": records(second_copy, scored)}


def test_grpo_memory_met_when_the_patch_costs_little_of_a_resolved_second_copy():
    summary = load("grpo_memory").summarize(memory_runs([1000, 1005, 1002], [1030, 1032, 1028], [1300, 1302, 1305]))
    assert summary["median_peak_rss_mb"] == {"baseline": 1002, "patch": 1030, "second_copy": 1302}
    assert summary["spread_mb"] == {"baseline": 5, "patch": 4, "second_copy": 5}
    assert summary["patch_share"] == pytest.approx(28 / 300)
    assert summary["resolvable"] and summary["control_fails_goal"]
    assert summary["meets_goal"] is True


def test_grpo_memory_not_met_when_the_patch_costs_half_a_copy():
    summary = load("grpo_memory").summarize(memory_runs([1000, 1000], [1150, 1150], [1300, 1300]))
    assert summary["patch_share"] == pytest.approx(0.5)
    assert summary["meets_goal"] is False
    assert summary["reason"].startswith("not met")


def test_grpo_memory_cannot_tell_when_the_noise_hides_the_second_copy():
    # The stored result of the earlier version: the patch ran below the baseline, the copy 250 MB above it.
    summary = load("grpo_memory").summarize(memory_runs([5000, 4800], [4763, 4900], [5248, 5100]))
    assert not summary["resolvable"]
    assert summary["meets_goal"] is False
    assert summary["reason"].startswith("cannot tell")


def test_grpo_memory_not_met_when_the_scorer_never_ran():
    summary = load("grpo_memory").summarize(memory_runs([1000], [1010], [1300], scored=0))
    assert summary["resolvable"] and not summary["scoring_ran"]
    assert summary["meets_goal"] is False


def test_rewriter_vs_prompted_goal_needs_both_parts():
    check = load("rewriter_vs_prompted").goal_check
    assert check(1.10, 0.32, 0.145) == {"goal_nll_ratio": 0.85, "goals": {"nll_ratio": False, "acceptance_no_lower": True}, "meets_goal": False}
    assert check(0.80, 0.10, 0.145)["goals"] == {"nll_ratio": True, "acceptance_no_lower": False}
    assert check(0.80, 0.20, 0.145)["meets_goal"] is True
    assert check(None, 0.0, 0.1)["meets_goal"] is False


def step_times(generate, decode_loop, batching=None):
    results = {
        "trl_generate": {"median_step_seconds": generate, "median_generation_seconds": generate / 2,
                         "step_seconds": [9.0, generate, generate], "generation_seconds": [8.0, generate / 2, generate * 0.4]},
        "decode_loop": {"median_step_seconds": decode_loop, "median_generation_seconds": decode_loop / 4},
    }
    results["trl_continuous_batching"] = {"error": "RuntimeError: no"} if batching is None else {"median_step_seconds": batching, "median_generation_seconds": batching}
    return results


def test_grpo_step_time_met_at_half_the_generate_step_and_the_control_fails():
    summary = load("grpo_step_time").summarize(step_times(100.0, 45.0))
    assert summary["decode_loop_over_generate"] == 0.45 and summary["step_time_over_generate"]["trl_generate"] == 1.0
    assert summary["control_fails_goal"] and summary["meets_goal"] is True
    assert summary["fastest_engine"] == "decode_loop" and "trl_continuous_batching" not in summary["median_step_seconds"]
    # The warm-up step is left out: the control's generation shares are 0.5 and 0.4, so free generation gives 0.55x.
    assert summary["generation_share_of_step"] == {"trl_generate": 0.45} and summary["bound_with_free_generation"] == 0.55


def test_grpo_step_time_not_met_above_half_or_without_the_control():
    module = load("grpo_step_time")
    summary = module.summarize(step_times(100.0, 60.0, batching=50.0))
    assert summary["meets_goal"] is False and summary["fastest_engine"] == "trl_continuous_batching"
    missing = module.summarize({"decode_loop": {"median_step_seconds": 1.0, "median_generation_seconds": 1.0}})
    assert missing["meets_goal"] is False and "did not run" in missing["reason"]


def _warm_start_runs(control, warm):
    return {"control": {"feasible_fraction": control, "zero_spread_fraction": [1.0] * len(control), "r_div": [None] * len(control)},
            "warm_start": {"feasible_fraction": warm, "zero_spread_fraction": [0.5] * len(warm), "r_div": [0.01] * len(warm)}}


def test_grpo_warm_start_met_only_when_the_warm_start_is_above_the_control_over_every_step():
    summarize = load("grpo_warm_start").summarize
    met = summarize(_warm_start_runs([0.0, 0.0625], [0.25, 0.125]), steps=2)
    assert met["meets_goal"] is True and met["feasible_fraction_gain"] == pytest.approx(0.15625)
    assert summarize(_warm_start_runs([0.125, 0.0], [0.0, 0.125]), steps=2)["meets_goal"] is False  # equal means
    unfinished = summarize(_warm_start_runs([0.0, 0.0], [0.5]), steps=2)
    assert unfinished["complete"] is False and unfinished["meets_goal"] is False
    assert summarize({"control": _warm_start_runs([0.0], [0.0])["control"]}, steps=1)["meets_goal"] is False
