"""One model, all tasks: :func:`evaluate_model` on loaded tasks, :func:`run_evaluation` from model names to a report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..generation import GenerationBackend
from .config import EvaluationConfig
from .likelihood import answer_nll, evaluate_multiple_choice, kl_divergence
from .lm_eval_harness import LM_EVAL_PREFIX, lm_eval_metrics, lm_eval_task_keys, lm_eval_task_manager, run_lm_eval
from .metrics import compare_to_base
from .report import write_json, write_report
from .sampling import build_kl_reference, evaluate_math_generation
from .task_files import task_spec_dict
from .tasks import DEFAULT_TASKS, TASKS, TaskData, TaskSpec, get_task, load_tasks


def _lm_eval_limit(config: EvaluationConfig, task: str) -> int | None:
    # A per-task limit may name the lm-eval task as "lm_eval/<task>" or as "<task>".
    if isinstance(config.limit, Mapping):
        return config.limit.get(LM_EVAL_PREFIX + task, config.limit.get(task))
    return config.limit


def _evaluate_lm_eval(
    model: Any, tokenizer: Any, tasks: Sequence[str], include_path: str | Path | None, config: EvaluationConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    by_limit: dict[int | None, list[str]] = {}
    for task in dict.fromkeys(tasks):
        by_limit.setdefault(_lm_eval_limit(config, task), []).append(task)
    metrics: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for limit, group in by_limit.items():
        results = run_lm_eval(model, tokenizer, group, include_path=include_path, limit=limit, batch_size=config.batch_size)
        metrics.update(lm_eval_metrics(results))
        details.update({LM_EVAL_PREFIX + task: result["details"] for task, result in results.items()})
    return metrics, details


def evaluate_model(
    model: Any,
    tokenizer: Any,
    data: TaskData,
    *,
    config: EvaluationConfig | None = None,
    base: Any = None,
    kl_reference: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    backend: GenerationBackend | None = None,
    lm_eval_tasks: Sequence[str] | None = None,
    lm_eval_include_path: str | Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every measure of one model on loaded tasks.

    Args:
        model: The model to evaluate.
        tokenizer: Its tokenizer.
        data: Items from :func:`load_tasks`.
        config: Sizes and settings.
        base: pi_0, for the KL measures (skipped when None).
        kl_reference: pi_0 samples from :func:`build_kl_reference` (sampled from ``base`` when None).
        backend: Generation backend for the math tasks (default: transformers on ``model``).
        lm_eval_tasks: lm-evaluation-harness tasks to run on ``model`` too
            (:func:`~hf_patchdist.evaluation.lm_eval_harness.run_lm_eval`; needs
            ``pip install 'hf-patchdist[lm-eval]'``), ``config.limit_for("lm_eval/<task>")`` (else
            ``limit_for("<task>")``) items each.
        lm_eval_include_path: Folder with local lm-eval task YAMLs.

    Returns:
        ``(metrics, details)``. ``metrics`` is flat: ``<math task>`` (accuracy), ``<math task>_n``,
        ``heldout_answer_nll`` (first math task), ``<mc task>`` (acc_norm), ``<mc task>_raw`` (acc),
        ``<mc task>_gold_nll`` (per character), ``<mc task>_n``, for lm-eval tasks ``lm_eval/<task>``
        (acc_norm, else acc), ``lm_eval/<task>_raw`` (acc) and ``lm_eval/<task>_n``, and with a base
        ``kl_from_base`` (new-task prompts) and ``kl_general``. ``details`` holds per-item records.
    """
    config = config or EvaluationConfig()
    model.eval()
    metrics: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for name, items in data.math.items():
        result = evaluate_math_generation(
            model, tokenizer, items, backend=backend, max_new_tokens=config.max_new_tokens, batch_size=config.generation_batch_size, show_progress=config.show_progress
        )
        metrics[name], metrics[f"{name}_n"], metrics[f"{name}_extracted"] = result["accuracy"], result["n"], result["extracted"]
        details[name] = result["details"]
        if name == data.new_task:
            nll = answer_nll(model, tokenizer, items, batch_size=config.batch_size, show_progress=config.show_progress)
            metrics["heldout_answer_nll"], metrics["heldout_answer_nll_n"] = nll["nll"], nll["n"]
    for name, items in data.multiple_choice.items():
        result = evaluate_multiple_choice(model, tokenizer, items, batch_size=config.batch_size, show_progress=config.show_progress, desc=name)
        metrics.update({name: result["acc_norm"], f"{name}_raw": result["acc"], f"{name}_gold_nll": result["gold_nll_per_char"], f"{name}_n": result["n"]})
        details[name] = result["details"]
    if lm_eval_tasks:
        lm_metrics, lm_details = _evaluate_lm_eval(model, tokenizer, lm_eval_tasks, lm_eval_include_path, config)
        metrics.update(lm_metrics)
        details.update(lm_details)
    if base is not None:
        if kl_reference is None:
            kl_reference = build_kl_reference(base, tokenizer, data, config)
        for key, metric in (("new_task", "kl_from_base"), ("general", "kl_general")):
            if key in kl_reference:
                ref = kl_reference[key]
                kl = kl_divergence(base, model, tokenizer, ref["prompts"], ref["continuations"], batch_size=config.batch_size, show_progress=config.show_progress)
                metrics[metric], metrics[f"{metric}_tokens"] = kl["kl"], kl["tokens"]
    return metrics, details


def _load(model: Any, tokenizer: Any, dtype: Any, device: str | None) -> tuple[Any, Any, str]:
    from ..models import load_model_and_tokenizer

    if isinstance(model, (str, Path)):
        loaded, loaded_tokenizer = load_model_and_tokenizer(str(model), dtype=dtype, device=device)
        return loaded, tokenizer or loaded_tokenizer, str(model)
    if tokenizer is None:
        raise ValueError("Pass the tokenizer together with a loaded model.")
    return model, tokenizer, str(getattr(getattr(model, "config", None), "_name_or_path", "") or "model")


def run_evaluation(
    model: Any,
    *,
    base: Any = None,
    tokenizer: Any = None,
    tasks: Sequence[str | TaskSpec] = DEFAULT_TASKS,
    limit: int | dict[str, int] | None = None,
    data_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    config: EvaluationConfig | None = None,
    base_metrics: Mapping[str, Any] | None = None,
    dtype: Any = None,
    device: str | None = None,
    lm_eval_tasks: Sequence[str] | None = None,
    lm_eval_include_path: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a model (and its base): downstream accuracy, multiple-choice accuracy, NLLs, KL, forgetting.

    Args:
        model: Model to evaluate: alias, local folder or Hub id, or a loaded model (with ``tokenizer``).
        base: The model it was fine-tuned from (same forms; a loaded base uses the same tokenizer).
            Needed for the KL measures and the forgetting/gain comparison.
        tokenizer: Tokenizer of a loaded ``model``.
        tasks: Built-in task names (``gsm8k``, ``arc_easy``, ``arc_challenge``, ``hellaswag``) or
            :class:`TaskSpec` objects. The first math task is the downstream task; the
            multiple-choice tasks are the general benchmarks.
        limit: Items per task (int or mapping); overrides ``config.limit``.
        data_dir: Folder with local JSONL in the layout of the project's shared data
            (``gsm8k/test.jsonl``...); None reads the Hub data sets.
        output_dir: Where to write the report (``results.json``, ``results.md``,
            ``gain_vs_forgetting.png``) and per-item details (``details.json``); None writes nothing.
        config: Sizes and settings (:class:`EvaluationConfig`).
        base_metrics: The base model's metrics from an earlier evaluation (skips re-evaluating it).
        dtype: dtype for models loaded by name (``"auto"``: bfloat16 where supported).
        device: Device for models loaded by name.
        lm_eval_tasks: lm-evaluation-harness tasks (``arc_easy``, ``piqa``...; see
            :func:`~hf_patchdist.evaluation.lm_eval_harness.run_lm_eval`) run on the model and the
            base too; their accuracies (``lm_eval/<task>``) count as general benchmarks in the
            forgetting comparison, next to the multiple-choice ``tasks``. Needs
            ``pip install 'hf-patchdist[lm-eval]'``.
        lm_eval_include_path: Folder with local lm-eval task YAMLs (``TaskManager(include_path=...)``).

    Returns:
        ``{"model", "base", "metrics", "base_metrics", "comparison", "config", "files"}``; ``metrics``
        as in :func:`evaluate_model`, ``comparison`` as in :func:`compare_to_base`.

    Example:
        ```python
        from hf_patchdist.evaluation import run_evaluation

        report = run_evaluation("outputs/sft-model", base="smollm2-135m-instruct", limit=100,
                                data_dir="../shared/data", output_dir="outputs/eval")
        report["comparison"]["forgetting_mean"], report["metrics"]["kl_general"]
        ```
    """
    config = replace(config or EvaluationConfig(), **({"limit": limit} if limit is not None else {}))
    lm_eval_tasks = list(dict.fromkeys(lm_eval_tasks or []))
    if not tasks and not lm_eval_tasks:
        raise ValueError("Nothing to evaluate: no tasks and no lm-eval tasks.")
    if lm_eval_tasks:
        lm_eval_task_manager(lm_eval_tasks, lm_eval_include_path)  # unknown names or no lm-eval: fail before loading models
    elif lm_eval_include_path is not None:
        raise ValueError("lm_eval_include_path without lm_eval_tasks: name the tasks of the include path to run.")
    lm_eval_args = {"lm_eval_tasks": lm_eval_tasks, "lm_eval_include_path": lm_eval_include_path}
    model, tokenizer, model_name = _load(model, tokenizer, dtype, device)
    data = load_tasks(tasks, data_dir=data_dir, config=config)
    base_model, base_name = None, None
    if base is not None:
        base_model, _, base_name = _load(base, tokenizer, dtype, device)
    kl_reference = build_kl_reference(base_model, tokenizer, data, config) if base_model is not None else None
    metrics, model_details = evaluate_model(model, tokenizer, data, config=config, base=base_model, kl_reference=kl_reference, **lm_eval_args)
    details = {"model": model_details}
    comparison: dict[str, Any] = {}
    if base_model is not None and base_metrics is None:
        base_metrics, details["base"] = evaluate_model(base_model, tokenizer, data, config=config, **lm_eval_args)
        base_metrics.update(kl_from_base=0.0, kl_general=0.0)
    if base_metrics is not None:
        # General benchmarks: the project's multiple-choice tasks and the lm-eval accuracies alike.
        general_tasks = list(data.multiple_choice) + lm_eval_task_keys(metrics)
        comparison = compare_to_base(metrics, base_metrics, general_tasks=general_tasks, new_task=data.new_task)
    result = {
        "model": model_name,
        "base": base_name,
        "metrics": metrics,
        "base_metrics": dict(base_metrics) if base_metrics is not None else None,
        "comparison": comparison,
        "config": {
            **config.to_dict(),
            "tasks": [get_task(t).name for t in tasks],
            # user tasks (not a built-in spec): where their data came from
            "user_tasks": {spec.name: task_spec_dict(spec) for spec in map(get_task, tasks) if TASKS.get(spec.name) is not spec},
            "data_dir": str(data_dir) if data_dir else None,
            "lm_eval_tasks": lm_eval_tasks,
            "lm_eval_include_path": str(lm_eval_include_path) if lm_eval_include_path is not None else None,
        },
        "files": {},
    }
    if output_dir is not None:
        methods = {}
        if base_metrics is not None:
            methods["base"] = {**base_metrics, "forgetting_mean": 0.0}
        methods["model"] = {**metrics, **comparison}
        files = write_report(methods, output_dir, config={**result["config"], "model": model_name, "base": base_name}, title=f"Evaluation of {model_name}")
        files["details"] = write_json(details, Path(output_dir) / "details.json")
        result["files"] = {k: str(v) for k, v in files.items()}
    return result
