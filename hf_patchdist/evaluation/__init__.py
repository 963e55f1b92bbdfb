"""Measure what the method is for: downstream gain and forgetting.

Four kinds of measurement, all batched, on any causal LM (a PEFT adapter, when present, stays on):

* **downstream accuracy** (GSM8K-style): greedy generation through the model's chat template, the
  final answer extracted and compared for mathematical equivalence with the gold answer
  (:class:`MathAnswerAccuracy`);
* **multiple-choice accuracy** (ARC, HellaSwag, user data sets): the log-likelihood of each choice
  as a continuation of the lm-eval-harness query, raw (``acc``) and normalised by the choice's
  length in characters (``acc_norm``, the headline) (:class:`MultipleChoiceAccuracy`);
* **continuous measures**, informative where a small model's accuracies are noise: the mean
  per-character NLL of the gold choice, the mean per-token NLL of held-out gold answers, and the
  forward KL divergence KL(pi_0 || pi_tuned) per token on continuations sampled from pi_0 (on the
  new task's prompts and on general-domain chat prompts). "RL's Razor" (arXiv 2509.04259) finds that
  forgetting tracks exactly this KL, whatever the training method;
* **comparison with the base model**: ``forgetting = (base - tuned) / base`` per general benchmark
  on ``acc_norm`` (signed: negative means the tuned model got better), averaged into
  ``forgetting_mean``; downstream gain in accuracy and in held-out answer NLL.

:func:`run_evaluation` does all of it for one model (and its base) and writes a report as JSON,
a markdown table and a PNG plot (:func:`write_report`).

The modules, one job each (everything is importable from ``hf_patchdist.evaluation``):

* :mod:`~hf_patchdist.evaluation.tasks`: task specs, Hub/local data and the loaded items;
* :mod:`~hf_patchdist.evaluation.task_files`: user task files (YAML/JSON lists of task specs);
* :mod:`~hf_patchdist.evaluation.lm_eval_harness`: EleutherAI's lm-evaluation-harness as an optional
  engine for multiple-choice benchmarks (``pip install 'hf-patchdist[lm-eval]'``);
* :mod:`~hf_patchdist.evaluation.config`: :class:`EvaluationConfig`;
* :mod:`~hf_patchdist.evaluation.metrics`: the accuracy metrics, forgetting and the comparison with the base;
* :mod:`~hf_patchdist.evaluation.likelihood`: measures by forward pass (continuation log-probabilities,
  multiple choice, answer NLL, KL);
* :mod:`~hf_patchdist.evaluation.sampling`: measures that generate (greedy answers, pi_0 samples for the KL);
* :mod:`~hf_patchdist.evaluation.report`: markdown table, plot and JSON;
* :mod:`~hf_patchdist.evaluation.runner`: one model on all tasks, and the whole evaluation.
"""

from __future__ import annotations

from .config import EvaluationConfig
from .likelihood import answer_nll, continuation_log_probs, encode_continuations, evaluate_multiple_choice, kl_divergence
from .lm_eval_harness import (
    LM_EVAL_INSTALL_HINT,
    LM_EVAL_PREFIX,
    lm_eval_metrics,
    lm_eval_task_keys,
    lm_eval_task_manager,
    lm_eval_task_yaml,
    require_lm_eval,
    run_lm_eval,
    write_lm_eval_task,
)
from .metrics import MathAnswerAccuracy, MultipleChoiceAccuracy, compare_to_base, forgetting, math_answer_correct
from .report import REPORT_COLUMNS, markdown_table, plot_gain_vs_forgetting, task_columns, write_json, write_report
from .runner import evaluate_model, run_evaluation
from .sampling import build_kl_reference, evaluate_math_generation, generate_answers, kl_prompts, sample_continuations
from .task_files import TASK_FILE_FIELDS, combine_tasks, load_task_file, task_spec_dict
from .tasks import (
    CHOICE_DELIMITER,
    DEFAULT_TASKS,
    QUESTION_QUERY_TEMPLATE,
    TASKS,
    MultipleChoiceItem,
    TaskData,
    TaskSpec,
    get_task,
    load_task_rows,
    load_tasks,
    normalize_hub_arc,
    normalize_hub_hellaswag,
    to_math_items,
    to_multiple_choice_items,
)

__all__ = [
    "CHOICE_DELIMITER",
    "DEFAULT_TASKS",
    "LM_EVAL_INSTALL_HINT",
    "LM_EVAL_PREFIX",
    "QUESTION_QUERY_TEMPLATE",
    "REPORT_COLUMNS",
    "TASKS",
    "TASK_FILE_FIELDS",
    "EvaluationConfig",
    "MathAnswerAccuracy",
    "MultipleChoiceAccuracy",
    "MultipleChoiceItem",
    "TaskData",
    "TaskSpec",
    "answer_nll",
    "build_kl_reference",
    "combine_tasks",
    "compare_to_base",
    "continuation_log_probs",
    "encode_continuations",
    "evaluate_math_generation",
    "evaluate_model",
    "evaluate_multiple_choice",
    "forgetting",
    "generate_answers",
    "get_task",
    "kl_divergence",
    "kl_prompts",
    "lm_eval_metrics",
    "lm_eval_task_keys",
    "lm_eval_task_manager",
    "lm_eval_task_yaml",
    "load_task_file",
    "load_task_rows",
    "load_tasks",
    "markdown_table",
    "math_answer_correct",
    "normalize_hub_arc",
    "normalize_hub_hellaswag",
    "plot_gain_vs_forgetting",
    "require_lm_eval",
    "run_evaluation",
    "run_lm_eval",
    "sample_continuations",
    "task_columns",
    "task_spec_dict",
    "to_math_items",
    "to_multiple_choice_items",
    "write_json",
    "write_lm_eval_task",
    "write_report",
]
