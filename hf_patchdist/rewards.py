"""TRL reward callables of Stage I: the gate, QA-style alignment, diversity, and their gated total.

They follow TRL's reward-function contract ``(prompts, completions, **dataset_columns) ->
list[float | None]`` and plug into ``trl.GRPOTrainer`` as they are. TRL 1.16 calls a reward once
per local generation batch holding several groups (each prompt's K completions next to each
other), passes the data set's columns except ``prompt``/``completion`` as keyword lists, and does
not pass ``num_generations``. QA(q) is the row's question after its context turns (system prompt, earlier
turns), read from the optional ``qa_context`` column (the turns as a JSON list, which
:class:`~hf_patchdist.trainers.RewriterTrainer` adds; without it the bare question) and built by
:func:`~hf_patchdist.scoring.qa_prompt_of`, as in Stage II. The rewards find their groups from the ``patch_row_id``
column (not from the prompt text: two identical rows are two groups) and compute normalisation and
diversity inside each group, as the paper's formulas say:

    r_task in {0, 1}
    r_dist = sigmoid(-(l_i - mean_F) / (std_F + eps))        over the feasible candidates F
    r_div  = max(0, D(F) - D(F minus i))                       D = mean pairwise (1 - cos) / 2
    r      = r_task * (1 + lambda_dist * r_dist + lambda_div * r_div)

``std_F`` is the population standard deviation, ``eps = 1e-6``; a lone feasible candidate gets
``r_dist = 0.5`` and ``r_div = 0``; the mean pairwise distance of fewer than two items is 0, so two
feasible candidates each get ``r_div`` equal to their distance. Infeasible candidates get 0 for
every term.

The cosines of r_div are taken between embeddings centred on a running mean
(:class:`RunningEmbeddingMean`, ``diversity_centering="running_mean"``, the default): mean-pooled
hidden states of a small model share one large common direction, so raw cosines between any two
answers are close to 1 and r_div averaged 0.003 on GSM8K rollouts of SmolLM2-135M, too small to
move the policy. The mean is over the feasible candidates of earlier reward calls (never the
group's own: centred on its own mean, two candidates are always opposite), updated after each
call's rewards are computed; :class:`~hf_patchdist.trainers.RewriterTrainer` saves it with every
checkpoint, so a resumed run computes the same rewards. ``diversity_centering="none"`` gives the
paper's raw cosines.

The classes are plain callables, never ``torch.nn.Module`` (GRPOTrainer treats modules as reward
models). NLL and embedding come from one forward pass of pi_0 (:class:`~hf_patchdist.scoring.QAScorer`),
which is the trainer's backbone with the adapter disabled unless a separate scorer model is given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .formats import QAExample
from .scoring import QAScorer, qa_prompt_of
from .verifiers import GRPO_GATE, Verifier, get_verifier, reference_similarity


REWARD_COLUMNS = ("question", "expert_answer", "patch_row_id")
DIVERSITY_CENTERINGS = ("running_mean", "none")
"""Values of ``diversity_centering``: embeddings centred on :class:`RunningEmbeddingMean`, or raw."""
QA_CONTEXT_COLUMN = "qa_context"
"""Optional column: the turns before the question (system prompt, earlier turns) as a JSON list of messages."""
EPS = 1e-6


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or a list of messages (conversational prompts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    return str(completion)


def qa_context_value(context: Sequence[Mapping[str, Any]]) -> str:
    """A row's ``qa_context`` column: its context turns as JSON (Arrow keeps any message shape as a string)."""
    return json.dumps([dict(m) for m in context])


def _context_turns(value: Any) -> list[dict[str, Any]]:
    if value is None or value == "":
        return []
    return list(json.loads(value) if isinstance(value, str) else value)


def group_indices(row_ids: Sequence[Any]) -> list[list[int]]:
    """Indices of each group, groups in order of first appearance."""
    groups: dict[Any, list[int]] = {}
    for index, row_id in enumerate(row_ids):
        groups.setdefault(row_id, []).append(index)
    return list(groups.values())


def alignment_rewards(nll: Sequence[float | None], feasible: Sequence[bool], groups: Sequence[Sequence[int]], eps: float = EPS) -> list[float]:
    """r_dist: ``sigmoid(-z)`` of each feasible candidate's NLL, z-normalised inside its group's feasible set."""
    rewards = [0.0] * len(feasible)
    for group in groups:
        members = [i for i in group if feasible[i]]
        if not members:
            continue
        values = [float(nll[i]) for i in members]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        for i, value in zip(members, values):
            rewards[i] = 1.0 / (1.0 + math.exp((value - mean) / (std + eps)))
    return rewards


def mean_pairwise_distance(embeddings: torch.Tensor) -> float:
    """Mean of ``(1 - cos) / 2`` over distinct pairs; 0 for fewer than two items."""
    count = embeddings.shape[0]
    if count < 2:
        return 0.0
    normed = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    distance = (1.0 - normed @ normed.T) / 2.0
    upper = torch.triu_indices(count, count, offset=1)
    return float(distance[upper[0], upper[1]].mean())


def diversity_rewards(
    embeddings: torch.Tensor | None,
    feasible: Sequence[bool],
    groups: Sequence[Sequence[int]],
    center: torch.Tensor | None = None,
) -> list[float]:
    """r_div: each feasible candidate's marginal contribution to its group's mean pairwise distance.

    Args:
        embeddings: ``(n, hidden)`` embeddings of the candidates (rows of infeasible ones are not read), or None.
        feasible: r_task of each candidate.
        groups: Candidate indices of each group.
        center: A point subtracted from every embedding before the cosines (a running mean over earlier
            candidates, :class:`RunningEmbeddingMean`); None measures the raw cosines.
    """
    rewards = [0.0] * len(feasible)
    if embeddings is None:
        return rewards
    if center is not None:
        embeddings = embeddings.float() - center.to(embeddings.device, torch.float32)
    for group in groups:
        members = [i for i in group if feasible[i]]
        if len(members) < 2:
            continue
        whole = mean_pairwise_distance(embeddings[members])
        for position, i in enumerate(members):
            rest = members[:position] + members[position + 1 :]
            rewards[i] = max(0.0, whole - mean_pairwise_distance(embeddings[rest]))
    return rewards


class RunningEmbeddingMean:
    """Running mean of the feasible candidates' pi_0 embeddings: the origin of r_div's cosines.

    A cumulative mean until ``1 / (1 - momentum)`` embeddings have been seen, then an exponential
    moving average: each update moves the mean towards the new batch's mean by
    ``max(1 - momentum, batch_count / total_count)``. Before the first update there is no mean and
    r_div uses the raw embeddings.

    Args:
        momentum: Weight of the old mean once enough embeddings have been seen (0.99: about the last 100
            feasible candidates).

    Example:
        ```python
        running = RunningEmbeddingMean(momentum=0.99)
        running.update(embeddings.sum(dim=0), embeddings.shape[0])
        rewards = diversity_rewards(embeddings, feasible, groups, center=running.mean)
        ```
    """

    def __init__(self, momentum: float = 0.99) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"The running-mean momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.mean: torch.Tensor | None = None
        self.count = 0

    def update(self, total: torch.Tensor | None, count: int) -> None:
        """Fold in ``count`` embeddings whose sum is ``total`` (nothing happens for ``count == 0``)."""
        if total is None or count <= 0:
            return
        batch_mean = total.detach().float().cpu() / count
        self.count += int(count)
        weight = max(1.0 - self.momentum, count / self.count)
        self.mean = batch_mean.clone() if self.mean is None else self.mean + weight * (batch_mean - self.mean)

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state (float32 values as Python floats, which round-trip exactly)."""
        return {"momentum": self.momentum, "count": self.count, "mean": None if self.mean is None else self.mean.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.momentum = float(state["momentum"])
        self.count = int(state["count"])
        self.mean = None if state.get("mean") is None else torch.tensor(state["mean"], dtype=torch.float32)


def running_mean_for(centering: str, momentum: float) -> RunningEmbeddingMean | None:
    """The running mean that ``diversity_centering`` asks for (None for ``"none"``), checked."""
    if centering not in DIVERSITY_CENTERINGS:
        raise ValueError(f"diversity_centering must be one of {DIVERSITY_CENTERINGS}, got {centering!r}")
    return RunningEmbeddingMean(momentum) if centering == "running_mean" else None


@dataclass
class CandidateEvaluation:
    """Gate verdicts and pi_0 scores of one reward call's candidates.

    Attributes:
        feasible: r_task of each candidate.
        reasons: The gate's reason for each candidate ("" when feasible).
        groups: Candidate indices of each group (by ``patch_row_id``).
        nll: pi_0 NLL under QA(q) of each feasible candidate (None for infeasible ones).
        embeddings: ``(n, hidden)`` embeddings (zero rows for infeasible candidates), or None.
        details: The gate's detail for each candidate ("" when feasible).
        completion_lengths: Tokens of each candidate (from TRL's ``completion_ids``; empty when not given).
        reference_similarity: Share of the expert answer's words each feasible candidate keeps in order
            (:func:`~hf_patchdist.verifiers.reference_similarity`; None for infeasible candidates).
    """

    feasible: list[bool]
    reasons: list[str]
    groups: list[list[int]]
    nll: list[float | None]
    embeddings: torch.Tensor | None
    details: list[str] = field(default_factory=list)
    completion_lengths: list[int] = field(default_factory=list)
    reference_similarity: list[float | None] = field(default_factory=list)


class GroupReward:
    """Shared machinery: gate every candidate, score the feasible ones under pi_0 in one pass.

    Each call reports every candidate's gate verdict through TRL's ``log_extra``, in the columns
    ``<reward name>_gate_reason`` and ``<reward name>_gate_detail`` (:class:`PatchReward`: ``gate_reason`` and
    ``gate_detail``; ``"pass"`` for a feasible candidate). With ``log_completions=True`` in the GRPO config they
    appear in TRL's console table of completions and in its ``completions/*.parquet`` files: what the gate
    rejected during training, and why.
    """

    reward_name = "group_reward"
    needs_scores = True
    gate_column_prefix: str | None = None
    """Prefix of the logged gate columns; None for ``"<reward name>_"``."""
    embedding_mean: RunningEmbeddingMean | None = None
    """The origin of r_div's cosines (rewards with a diversity term; None: raw cosines)."""
    gather: Callable[[list], list] | None = None
    """Gathers a list from every process (:class:`~hf_patchdist.trainers.RewriterTrainer` sets accelerate's
    ``gather_object``), so that every process folds all candidates into the running mean and computes the same
    rewards; None: this process's candidates only."""

    def __init__(
        self,
        verifier: Verifier | str | dict | Callable | None = None,
        *,
        scorer: QAScorer | None = None,
        judge: Any = None,
        qa_template: str | None = None,
        eps: float = EPS,
    ) -> None:
        self.verifier = get_verifier(verifier if verifier is not None else GRPO_GATE)
        self.scorer = scorer
        self.judge = judge
        self.qa_template = qa_template
        self.eps = eps
        self.__name__ = self.reward_name

    def bind(self, model: Any, tokenizer: Any) -> None:
        """Score with this model (pi_0 = adapter disabled) unless a scorer was given."""
        if self.scorer is None:
            self.scorer = QAScorer(model, tokenizer)
        if self.judge is not None:
            self.judge.bind(model, tokenizer)

    def _truncated(self, completion_ids: Sequence[Sequence[int]] | None, count: int) -> list[bool]:
        if completion_ids is None or self.scorer is None:
            return [False] * count
        tokenizer = self.scorer.tokenizer
        stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
        generation_eos = getattr(getattr(self.scorer.model, "generation_config", None), "eos_token_id", None)
        stop_ids |= set(generation_eos if isinstance(generation_eos, list) else [generation_eos])
        return [not ids or ids[-1] not in stop_ids for ids in completion_ids]

    def evaluate(
        self,
        completions: Sequence[Any],
        *,
        question: Sequence[str],
        expert_answer: Sequence[str],
        patch_row_id: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        with_scores: bool = True,
        qa_context: Sequence[Any] | None = None,
    ) -> CandidateEvaluation:
        texts = [completion_text(c) for c in completions]
        truncated = self._truncated(completion_ids, len(texts))
        verdicts = [
            self.verifier(text, answer, question=q, truncated=cut)
            for text, answer, q, cut in zip(texts, expert_answer, question, truncated)
        ]
        feasible = [v.passed for v in verdicts]
        reasons = [v.reason for v in verdicts]
        details = [v.detail for v in verdicts]
        if self.judge is not None and any(feasible):
            idx = [i for i, ok in enumerate(feasible) if ok]
            passed = self.judge([question[i] for i in idx], [expert_answer[i] for i in idx], [texts[i] for i in idx])
            for i, ok in zip(idx, passed):
                if not ok:
                    feasible[i], reasons[i], details[i] = False, "judge_rejected", "the judge did not accept the reasoning"
        groups = group_indices(patch_row_id)
        nll: list[float | None] = [None] * len(texts)
        embeddings = None
        if with_scores and any(feasible):
            if self.scorer is None:
                raise RuntimeError(f"{self.__name__} needs a pi_0 scorer: pass scorer= or use it through RewriterTrainer.")
            idx = [i for i, ok in enumerate(feasible) if ok]
            contexts = qa_context if qa_context is not None else [None] * len(texts)
            prompts = [
                qa_prompt_of(self.scorer.tokenizer, QAExample(question[i], None, _context_turns(contexts[i])), self.qa_template)
                for i in idx
            ]
            scores = self.scorer.score(prompts, [texts[i] for i in idx])
            embeddings = torch.zeros(len(texts), scores.embeddings.shape[-1])
            for position, i in enumerate(idx):
                nll[i] = scores.nll[position]
                embeddings[i] = scores.embeddings[position]
        lengths = [len(ids) for ids in completion_ids] if completion_ids is not None else []
        similarity = [reference_similarity(text, answer) if ok else None for text, answer, ok in zip(texts, expert_answer, feasible)]
        return CandidateEvaluation(feasible, reasons, groups, nll, embeddings, details, lengths, similarity)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        missing = [c for c in REWARD_COLUMNS if c not in kwargs]
        if missing:
            raise KeyError(
                f"{self.__name__} needs the data set columns {list(REWARD_COLUMNS)}; missing {missing}. "
                "RewriterTrainer adds them; with plain GRPOTrainer, add them to the data set yourself."
            )
        evaluation = self.evaluate(
            completions,
            question=kwargs["question"],
            expert_answer=kwargs["expert_answer"],
            patch_row_id=kwargs["patch_row_id"],
            completion_ids=kwargs.get("completion_ids"),
            with_scores=self.needs_scores,
            qa_context=kwargs.get(QA_CONTEXT_COLUMN),
        )
        log_extra = kwargs.get("log_extra")
        if log_extra is not None:
            prefix = f"{self.__name__}_" if self.gate_column_prefix is None else self.gate_column_prefix
            log_extra(f"{prefix}gate_reason", [reason or "pass" for reason in evaluation.reasons])
            log_extra(f"{prefix}gate_detail", list(evaluation.details) or [""] * len(evaluation.reasons))
        return self.compute(evaluation, kwargs.get("log_metric"))

    def compute(self, evaluation: CandidateEvaluation, log_metric: Callable[[str, float], None] | None) -> list[float | None]:
        raise NotImplementedError

    def diversity(self, evaluation: CandidateEvaluation) -> list[float]:
        """r_div of ``evaluation``'s candidates, centred on the running mean; then folds them into that mean."""
        running = self.embedding_mean
        rewards = diversity_rewards(evaluation.embeddings, evaluation.feasible, evaluation.groups, None if running is None else running.mean)
        if running is not None:
            members = [i for i, ok in enumerate(evaluation.feasible) if ok] if evaluation.embeddings is not None else []
            total = evaluation.embeddings[members].float().sum(dim=0) if members else None
            if self.gather is None:
                running.update(total, len(members))
            else:  # every process calls the rewards once per generation batch, so the gather lines up
                parts = [(t, c) for t, c in self.gather([(None if total is None else total.tolist(), len(members))]) if c]
                if parts:
                    running.update(torch.tensor([t for t, _ in parts], dtype=torch.float32).sum(dim=0), sum(c for _, c in parts))
        return rewards

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep for a resumed run to compute the same rewards (the running mean)."""
        return {} if self.embedding_mean is None else {"embedding_mean": self.embedding_mean.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.embedding_mean is not None and state.get("embedding_mean") is not None:
            self.embedding_mean.load_state_dict(state["embedding_mean"])


class TaskConsistencyReward(GroupReward):
    """r_task: 1 when the rewrite passes the task-consistency gate, else 0.

    Args:
        verifier: The gate (default: :data:`~hf_patchdist.verifiers.GRPO_GATE`, the strict math verifier).
        judge: Optional :class:`~hf_patchdist.judge.LLMJudge` that must also accept the reasoning.

    Example:
        ```python
        reward = TaskConsistencyReward()
        reward(prompts=["p", "p"], completions=["48/2=24, 48+24=72\\n#### 72", "#### 72"],
               question=["q", "q"], expert_answer=["48/2=24\\n48+24=72\\n#### 72"] * 2, patch_row_id=[0, 0])
        ```
    """

    reward_name = "r_task"
    needs_scores = False

    def compute(self, evaluation: CandidateEvaluation, log_metric: Callable[[str, float], None] | None) -> list[float | None]:
        return [1.0 if ok else 0.0 for ok in evaluation.feasible]


class QAStyleAlignmentReward(GroupReward):
    """r_dist: how much more likely pi_0 finds a feasible rewrite than its group's other feasible ones.

    ``sigmoid(-z)`` of the length-normalised NLL under pi_0 given QA(q), z-normalised over the
    feasible candidates of the same ``patch_row_id``; 0 for infeasible candidates.

    Example:
        ```python
        reward = QAStyleAlignmentReward(scorer=QAScorer(model, tokenizer))
        ```
    """

    reward_name = "r_dist"

    def compute(self, evaluation: CandidateEvaluation, log_metric: Callable[[str, float], None] | None) -> list[float | None]:
        return alignment_rewards(evaluation.nll, evaluation.feasible, evaluation.groups, self.eps)


class DiversityReward(GroupReward):
    """r_div: marginal contribution of a feasible rewrite to its group's mean pairwise cosine distance.

    Args:
        diversity_centering: ``"running_mean"`` (default): cosines between embeddings centred on the running
            mean of earlier calls' feasible candidates (:class:`RunningEmbeddingMean`); ``"none"``: raw cosines.
        centering_momentum: Momentum of the running mean.
        **kwargs: As :class:`GroupReward` (``verifier``, ``scorer``, ``judge``, ``qa_template``).

    Example:
        ```python
        reward = DiversityReward(scorer=QAScorer(model, tokenizer))
        ```
    """

    reward_name = "r_div"

    def __init__(self, verifier: Any = None, *, diversity_centering: str = "running_mean", centering_momentum: float = 0.99, **kwargs: Any) -> None:
        super().__init__(verifier, **kwargs)
        self.embedding_mean = running_mean_for(diversity_centering, centering_momentum)

    def compute(self, evaluation: CandidateEvaluation, log_metric: Callable[[str, float], None] | None) -> list[float | None]:
        return self.diversity(evaluation)


class PatchReward(GroupReward):
    """The gated total ``r_task * (1 + lambda_dist * r_dist + lambda_div * r_div)``.

    Gate, NLL and embedding are computed once per candidate (one pi_0 forward for both scores).
    The components are logged through TRL's ``log_metric`` (not as extra reward functions, which
    would add to the total): ``patch/r_dist``, ``patch/r_dist_std``,
    ``patch/r_div``, ``patch/r_div_std``, ``patch/feasible_fraction``, ``patch/reward`` and ``patch/feasible_nll``;
    ``patch/dist_term`` and ``patch/div_term``, the mean of ``lambda_dist * r_dist`` and ``lambda_div * r_div``
    over the feasible candidates (what each term adds to a feasible candidate's reward of at least 1); and
    ``patch/rejected/<reason>``, the fraction of candidates the gate rejected for each reason seen so
    far (0 in a step without it, so that averages over steps stay fractions). A reason that climbs
    while the feasible fraction stays flat is the policy trying a cheap way through the gate.

    Args:
        verifier: The gate (default: :data:`~hf_patchdist.verifiers.GRPO_GATE`, the strict math verifier).
        lambda_dist: Weight of r_dist (the authors use 0.35).
        lambda_div: Weight of r_div (the authors use 0.5).
        scorer: A :class:`~hf_patchdist.scoring.QAScorer` on a separate model; default the trainer's
            backbone with the adapter disabled.
        judge: Optional LLM judge joining the gate.
        qa_template: None for the chat template, or a plain template with ``{question}``.
        diversity_centering: ``"running_mean"`` (default) or ``"none"``: see :class:`DiversityReward`.
        centering_momentum: Momentum of the running mean of the embeddings.

    Each call also hands its :class:`CandidateEvaluation` and totals to every callable in ``listeners``
    (``listener(evaluation, totals)``): :class:`~hf_patchdist.trainers.RewriterTrainer` summarises them every
    ``patch_summary_steps`` steps.

    Example:
        ```python
        from hf_patchdist import PatchReward, RewriterTrainer, RewriterGRPOConfig

        trainer = RewriterTrainer(model="smollm2-135m-instruct", args=RewriterGRPOConfig("out"),
                                  train_dataset=gsm8k, reward_funcs=[PatchReward(lambda_dist=0.35, lambda_div=0.5)])
        ```
    """

    reward_name = "patch_reward"
    gate_column_prefix = ""

    def __init__(
        self,
        verifier: Any = None,
        *,
        lambda_dist: float = 0.35,
        lambda_div: float = 0.5,
        diversity_centering: str = "running_mean",
        centering_momentum: float = 0.99,
        **kwargs: Any,
    ) -> None:
        super().__init__(verifier, **kwargs)
        self.lambda_dist = lambda_dist
        self.lambda_div = lambda_div
        self.embedding_mean = running_mean_for(diversity_centering, centering_momentum)
        self.listeners: list[Callable[[CandidateEvaluation, list[float]], None]] = []
        self._rejection_reasons: set[str] = set()

    def compute(self, evaluation: CandidateEvaluation, log_metric: Callable[[str, float], None] | None) -> list[float | None]:
        r_dist = alignment_rewards(evaluation.nll, evaluation.feasible, evaluation.groups, self.eps)
        r_div = self.diversity(evaluation)
        totals = [
            (1.0 + self.lambda_dist * d + self.lambda_div * v) if ok else 0.0
            for ok, d, v in zip(evaluation.feasible, r_dist, r_div)
        ]
        if log_metric is not None:
            feasible = [i for i, ok in enumerate(evaluation.feasible) if ok]
            count = len(evaluation.feasible)
            log_metric("patch/feasible_fraction", len(feasible) / count if count else 0.0)
            log_metric("patch/reward", sum(totals) / count if count else 0.0)
            if feasible:
                dist = [r_dist[i] for i in feasible]
                mean_dist = sum(dist) / len(dist)
                log_metric("patch/r_dist", mean_dist)
                log_metric("patch/r_dist_std", math.sqrt(sum((d - mean_dist) ** 2 for d in dist) / len(dist)))
                div = [r_div[i] for i in feasible]
                mean_div = sum(div) / len(div)
                log_metric("patch/r_div", mean_div)
                log_metric("patch/r_div_std", math.sqrt(sum((d - mean_div) ** 2 for d in div) / len(div)))
                log_metric("patch/dist_term", self.lambda_dist * mean_dist)
                log_metric("patch/div_term", self.lambda_div * mean_div)
                log_metric("patch/feasible_nll", sum(float(evaluation.nll[i]) for i in feasible) / len(feasible))
            self._rejection_reasons.update(reason for reason in evaluation.reasons if reason)
            for reason in sorted(self._rejection_reasons):
                log_metric(f"patch/rejected/{reason}", evaluation.reasons.count(reason) / count if count else 0.0)
        self.last_components = {"r_task": [float(ok) for ok in evaluation.feasible], "r_dist": r_dist, "r_div": r_div, "reasons": evaluation.reasons}
        for listener in self.listeners:
            listener(evaluation, totals)
        return totals
