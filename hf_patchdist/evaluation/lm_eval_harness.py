"""EleutherAI's lm-evaluation-harness as an optional engine for multiple-choice benchmarks.

Any lm-eval task (``arc_easy``, ``piqa``, ``winogrande``, ``mmlu``...) or a local task YAML
(``include_path``) runs on the model already loaded for the evaluation, through lm-eval's ``HFLM``
wrapper and ``lm_eval.simple_evaluate``. Its accuracies enter the same metrics and the same
forgetting report as the project's own measures, under ``lm_eval/<task>`` (``acc_norm``, or ``acc``
where the task has no ``acc_norm``), ``lm_eval/<task>_raw`` (``acc``) and ``lm_eval/<task>_n``.

Install it with ``pip install 'hf-patchdist[lm-eval]'``; ``lm_eval`` is imported only inside the
functions here.

Conventions, lm-eval against the project's own :func:`~hf_patchdist.evaluation.evaluate_multiple_choice`
(see ``tests/evaluation/test_lm_eval_harness.py``, which checks them item by item):

* the same: the query (ARC: ``"Question: {question}\\nAnswer:"``, no chat template unless
  ``apply_chat_template``), the choice scored as the continuation ``" " + choice`` (lm-eval's
  ``target_delimiter``), the summed log-likelihood (``acc``), and ``acc_norm`` dividing it by the
  choice's length in *characters* (``len(choice)``, without the delimiter; lm-eval's byte-length
  variant is ``acc_bytes``, not used here). Zero-shot unless the task says otherwise.
* different in general, identical with the SmolLM2 tokenizer on ARC and HellaSwag: lm-eval encodes
  ``context + continuation`` in one piece and splits the tokens at the context's length, the project
  encodes the two separately (as the rewriter's scorer does); and lm-eval encodes with the
  tokenizer's default special tokens (a tokenizer that prepends BOS gets it before the context),
  the project with none. For SmolLM2 neither matters: it adds no BOS, and the joint and separate
  encodings agree on every choice of ARC-Easy, ARC-Challenge and HellaSwag.
* lm-eval divides by the raw length (an empty choice gives NaN/inf), the project by at least 1.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..import_utils import is_lm_eval_available

LM_EVAL_PREFIX = "lm_eval/"
LM_EVAL_INSTALL_HINT = "pip install 'hf-patchdist[lm-eval]'"


def require_lm_eval() -> None:
    """Raise an ImportError that says how to install lm-evaluation-harness when it is missing."""
    if not is_lm_eval_available():
        raise ImportError(f"The lm-eval engine needs EleutherAI's lm-evaluation-harness, which is not installed: {LM_EVAL_INSTALL_HINT}")


@lru_cache(maxsize=8)
def _task_manager(include_path: str | None, include_defaults: bool) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=include_defaults)


def lm_eval_task_manager(tasks: Sequence[str], include_path: str | Path | None = None) -> Any:
    """A (cached) lm-eval ``TaskManager`` that knows every name in ``tasks``.

    Indexing lm-eval's thousands of built-in task YAMLs takes 5-15 s; when every task is a local
    one under ``include_path``, the manager indexes only that folder. Managers are cached per folder
    for the process: a YAML added to a folder already indexed is not seen (use a new folder).

    Raises:
        ImportError: lm-eval is not installed.
        FileNotFoundError: ``include_path`` does not exist.
        ValueError: A task name lm-eval does not know.
    """
    require_lm_eval()
    path = None
    if include_path is not None:
        folder = Path(include_path).expanduser()
        if not folder.exists():
            raise FileNotFoundError(f"lm-eval include path {folder} does not exist.")
        path = str(folder.resolve())
        local = _task_manager(path, False)
        if all(task in local.all_tasks for task in tasks):
            return local
    manager = _task_manager(path, True)
    unknown = [task for task in tasks if task not in manager.all_tasks]
    if unknown:
        where = f" or in the include path {path}" if path else ""
        raise ValueError(
            f"lm-eval does not know the task(s) {unknown}: not among its {len(manager.all_tasks)} built-in tasks, groups and tags{where} "
            "(list them with `lm-eval ls tasks`; local task YAMLs go in a folder passed as the include path)."
        )
    return manager


def _metric(row: Mapping[str, Any], name: str) -> float | None:
    # Result keys are "<metric>,<filter>": the unfiltered "none" first, else the first filter.
    if f"{name},none" in row:
        return row[f"{name},none"]
    return next((value for key, value in row.items() if key.split(",")[0] == name), None)


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])  # first index on ties, as numpy.argmax


def _sample_details(samples: Sequence[Mapping[str, Any]], delimiter: str) -> list[dict[str, Any]]:
    details = []
    for sample in samples:
        arguments = sample.get("arguments") or []
        log_likelihoods = [float(response[0]) for response in sample.get("filtered_resps") or []]
        record: dict[str, Any] = {"doc_id": sample.get("doc_id"), "answer_index": sample.get("target"), "log_likelihoods": log_likelihoods}
        if log_likelihoods:
            record["prediction"] = _argmax(log_likelihoods)
            contexts = {argument[0] for argument in arguments}
            if len(contexts) == 1 and len(arguments) == len(log_likelihoods):  # one context, one continuation per choice
                choices = [argument[1][len(delimiter) :] if argument[1].startswith(delimiter) else argument[1] for argument in arguments]
                record["prediction_norm"] = _argmax([ll / max(len(c), 1) for ll, c in zip(log_likelihoods, choices, strict=True)])
        for metric in ("acc", "acc_norm"):
            if metric in sample:
                record[metric] = sample[metric]
        details.append(record)
    return details


def run_lm_eval(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str],
    *,
    include_path: str | Path | None = None,
    limit: int | float | None = None,
    batch_size: int = 16,
    num_fewshot: int | None = None,
    apply_chat_template: bool = False,
    hflm_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run lm-eval tasks on a loaded model and tokenizer; ``acc``, ``acc_norm`` and ``n`` per task.

    The model goes to lm-eval as it is (``HFLM(pretrained=model, tokenizer=tokenizer)``: its device
    and dtype, a PEFT adapter stays on). lm-eval's seeds are set as its CLI sets them, and the
    global random states (Python, NumPy, torch) are restored afterwards.

    Args:
        model: A causal LM (``transformers`` or PEFT model).
        tokenizer: Its tokenizer.
        tasks: lm-eval task, group or tag names (``arc_easy``, ``piqa``...), or the ``task:`` names of
            YAMLs under ``include_path``. A group yields one result per subtask (and its aggregate).
        include_path: Folder with local task YAMLs (lm-eval's ``TaskManager(include_path=...)``).
        limit: Items per task (lm-eval's ``limit``: an int, or a fraction when below 1); None for all.
        batch_size: Sequences per forward pass.
        num_fewshot: Few-shot examples (None: the task's default, else 0).
        apply_chat_template: Ask through the tokenizer's chat template (lm-eval's option; off, as in
            the project's own multiple-choice measure).
        hflm_kwargs: More keyword arguments of ``HFLM`` (e.g. ``add_bos_token=True``, ``max_length``).

    Returns:
        ``{task: {"acc", "acc_norm" (when the task reports it), "n", "details"}}``, one entry per
        result with an ``acc``; ``details`` holds per item ``doc_id``, ``answer_index``, the
        per-choice ``log_likelihoods``, ``prediction`` (argmax), ``prediction_norm`` (argmax per
        character) and lm-eval's own ``acc``/``acc_norm`` for the item (empty for group aggregates).

    Raises:
        ImportError: lm-eval is not installed (the message says ``pip install 'hf-patchdist[lm-eval]'``).
        ValueError: An unknown task, or a task that reports no ``acc`` (lm-eval's generation tasks,
            such as its ``gsm8k``: use the project's own math task for those).

    Example:
        ```python
        from hf_patchdist.evaluation import run_lm_eval

        results = run_lm_eval(model, tokenizer, ["arc_easy", "piqa"], limit=200)
        results["piqa"]["acc_norm"], results["piqa"]["n"]
        ```
    """
    tasks = list(dict.fromkeys(tasks))
    if not tasks:
        return {}
    manager = lm_eval_task_manager(tasks, include_path)
    import lm_eval
    import numpy as np
    import torch
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, **dict(hflm_kwargs or {}))
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            output = lm_eval.simple_evaluate(
                model=lm,
                tasks=tasks,
                task_manager=manager,
                limit=limit,
                num_fewshot=num_fewshot,
                apply_chat_template=apply_chat_template,
                log_samples=True,
                bootstrap_iters=0,  # accuracies only; the report gives sqrt(p(1-p)/n)
            )
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
    if output is None:  # lm-eval returns None on non-zero ranks
        return {}
    n_samples = output.get("n-samples") or {}
    samples = output.get("samples") or {}
    configs = output.get("configs") or {}
    results: dict[str, dict[str, Any]] = {}
    for task, row in output["results"].items():
        acc = _metric(row, "acc")
        if acc is None:
            continue
        record: dict[str, Any] = {"acc": float(acc)}
        acc_norm = _metric(row, "acc_norm")
        if acc_norm is not None:
            record["acc_norm"] = float(acc_norm)
        task_samples = samples.get(task, [])
        if task in n_samples:
            record["n"] = int(n_samples[task]["effective"])
        elif isinstance(row.get("sample_len"), int):
            record["n"] = row["sample_len"]
        else:
            record["n"] = len(task_samples)
        delimiter = str((configs.get(task) or {}).get("target_delimiter", " "))
        record["details"] = _sample_details(task_samples, delimiter)
        results[task] = record
    groups = output.get("group_subtasks") or {}
    for group, subtasks in groups.items():
        if group in results and not results[group]["details"]:  # a group's aggregate: n over its subtasks
            results[group]["n"] = sum(results[task]["n"] for task in subtasks if task in results)
    no_acc = {
        task: sorted({key.split(",")[0] for key in row if "," in key and "_stderr" not in key})
        for task, row in output["results"].items()
        if task not in results and not groups.get(task)  # a group without an aggregate: its subtasks report
    }
    if no_acc:
        raise ValueError(
            f"lm-eval task(s) {sorted(no_acc)} report no 'acc' (their metrics: {no_acc}); the lm-eval engine takes multiple-choice "
            "(log-likelihood) tasks. Measure generation tasks such as math with the project's own tasks (--tasks gsm8k)."
        )
    return results


def lm_eval_metrics(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Flat metrics of :func:`run_lm_eval` results: ``lm_eval/<task>`` (acc_norm, else acc), ``lm_eval/<task>_raw`` (acc), ``lm_eval/<task>_n``."""
    metrics: dict[str, Any] = {}
    for task, result in results.items():
        key = LM_EVAL_PREFIX + task
        metrics[key] = result.get("acc_norm", result["acc"])
        metrics[f"{key}_raw"] = result["acc"]
        metrics[f"{key}_n"] = result["n"]
    return metrics


def lm_eval_task_keys(metrics: Mapping[str, Any]) -> list[str]:
    """The ``lm_eval/<task>`` accuracy keys of a metrics dict (the ones with a ``_n`` next to them), in order."""
    return [key for key in metrics if key.startswith(LM_EVAL_PREFIX) and f"{key}_n" in metrics and isinstance(metrics[f"{key}_n"], int)]


def lm_eval_task_yaml(
    name: str,
    data_file: str | Path,
    *,
    question_template: str = "Question: {{question}}\nAnswer:",
    choices: str = "choices",
    target: str = "{{answer_index}}",
) -> str:
    """The text of an lm-eval task YAML over a local multiple-choice JSONL file (the ARC schema of the project's data).

    ``data_file`` is written as an absolute path (lm-eval hands it to ``datasets.load_dataset``, which
    reads relative paths from the working directory). The defaults read rows with ``question``,
    ``choices`` (list of strings) and ``answer_index``, and ask ARC's lm-eval query; the templates are
    lm-eval's Jinja templates (``doc_to_text``, ``doc_to_choice``, ``doc_to_target``).
    """
    path = Path(data_file).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"lm-eval task {name!r}: data file {path} does not exist.")
    return (
        f"task: {name}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        f"    test: {_yaml_string(str(path))}\n"
        "output_type: multiple_choice\n"
        "test_split: test\n"
        f"doc_to_text: {_yaml_string(question_template)}\n"
        f"doc_to_choice: {_yaml_string(choices)}\n"
        f"doc_to_target: {_yaml_string(target)}\n"
        "metric_list:\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
        "  - metric: acc_norm\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
    )


def _yaml_string(value: str) -> str:
    # A JSON string is a valid double-quoted YAML scalar (newlines escaped as \n).
    return json.dumps(value)


def write_lm_eval_task(folder: str | Path | None, name: str, data_file: str | Path, **template: str) -> Path:
    """Write :func:`lm_eval_task_yaml` as ``<folder>/<name>.yaml`` (a new temporary folder when None); returns the folder.

    Pass the folder as ``include_path`` to :func:`run_lm_eval` (or ``--lm-eval-include-path``).
    """
    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="hf_patchdist_lm_eval_"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(lm_eval_task_yaml(name, data_file, **template))
    return folder

