"""Configuration of :class:`~hf_patchdist.trainers.RewriterTrainer` (Stage I: training the rewriting agent with GRPO)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from trl import GRPOConfig

from ..models import apply_hardware_precision
from ..rewriter.config import DEFAULT_PROMPT_TEMPLATE
from ..verifiers import GRPO_GATE, get_verifier

ALL_LINEAR = "all-linear"


@dataclass
class RewriterGRPOConfig(GRPOConfig):
    r"""Configuration for :class:`~hf_patchdist.trainers.RewriterTrainer`, a ``trl.GRPOConfig``.

    Every ``GRPOConfig`` argument works as in TRL. The defaults below follow the paper and the
    authors' code where they fit (``GRPOConfig``'s own defaults, beta 0, lr 1e-6 and 8 generations,
    are not the paper's):

    > Parameters whose defaults differ from ``GRPOConfig``:
    > - ``beta``: 0.001 (KL to pi_0, the backbone with the adapter disabled), not 0.
    > - ``learning_rate``: 3e-6 (the authors' value), not 1e-6.
    > - ``num_generations``: 4, the group size K (the authors use 5); must divide the generation batch.
    > - ``per_device_train_batch_size``: 4, so one process holds whole groups of K = 4.
    > - ``max_completion_length``: 256 tokens per rewrite.
    > - ``logging_steps``: 1 (GRPO steps are slow and few).
    > - ``num_train_epochs``: 2 (the authors' value).
    > - ``bf16`` and ``use_cpu`` without a GPU: ``use_cpu`` is set and ``bf16`` left unset becomes
    >   True only on a CPU that computes bfloat16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is
    >   emulated and several times slower than float32 (:func:`~hf_patchdist.models.apply_hardware_precision`).

    Parameters that control the rewriting task:

        lambda_dist (`float`, defaults to `0.35`):
            Weight of the QA-style alignment reward r_dist in ``r_task * (1 + lambda_dist * r_dist + lambda_div * r_div)``.
        lambda_div (`float`, defaults to `0.5`):
            Weight of the diversity reward r_div.
        verifier (`dict`, `str` or `None`, defaults to `{"name": "math", "strict": True, "max_reference_copy": 0.7, "min_step_ratio": 0.6}`):
            The task-consistency gate, anything :func:`~hf_patchdist.verifiers.get_verifier` accepts: a
            ``Verifier.to_dict()`` dict, a verifier name (``"math"``, ``"choice"``, ``"exact"``, ``"regex"``) or
            ``None`` (a plain ``MathVerifier()``); from Python a :class:`~hf_patchdist.verifiers.Verifier` instance
            works too. A string that starts with ``{`` is read as JSON, so the command line and YAML take
            ``--verifier '{"name": "math", "strict": true}'``; the spec is checked when the config is built. The
            GRPO gate is strict: text after
            the final-answer line fails rather than being trimmed, since trimmed tokens would still be trained
            on. It also fails a candidate that copies more than 90% of the expert answer verbatim: that copy
            always passes the gate, so without the check GRPO converges on it (a 30-step retraining of the
            GSM8K rewriter did: 110 of its 169 accepted rewrites were the expert answer word for word). The
            deterministic reasoning checks stay on unless you switch them off in the verifier options. The
            rewriter saved after training keeps the Stage II gate (:func:`~hf_patchdist.verifiers.stage_ii_gate`):
            the same checks, trailing text trimmed and copies of the expert answer kept.
            A callable verifier named by its import path (``{"name": "callable", "callable": "module:qualname"}``)
            is imported only when ``trust_remote_code`` is True: TRL's field of that name (for model code)
            also unlocks verifier code here, since both run code named by the config. A function or
            ``Verifier`` object passed from Python needs no opt-in.
        judge_model (`str` or `None`, defaults to `None`):
            Adds the LLM judge of the paper to the gate. ``"pi0"`` judges with the backbone itself (adapter
            disabled); any other value names a separate judge model. ``None`` disables the judge.
        judge_threshold (`float`, defaults to `0.5`):
            Minimum ``p(YES) / (p(YES) + p(NO))`` for the judge to accept.
        prompt_template (`str`):
            Rewriting prompt with ``{question}``, ``{answer}`` and ``{final_line}`` (same default as the Rewriter).
        system_prompt (`str` or `None`, defaults to `None`):
            Optional system turn before the rewriting prompt.
        qa_template (`str` or `None`, defaults to `None`):
            None renders QA(q) through the chat template; ``"Problem:\n{question}\n\nAnswer:\n"`` reproduces
            the authors' plain prefix.
        question_column (`str` or `None`, defaults to `None`):
            Plain column holding the question (default ``"question"`` when present; other TRL formats are
            detected).
        answer_column (`str` or `None`, defaults to `None`):
            Plain column holding the expert answer (default ``"answer"`` when present).
        scorer_model (`str` or `None`, defaults to `None`):
            A separate pi_0 scorer model (a second copy in memory). ``None`` scores with the trained backbone
            with the adapter disabled: one copy of the model serves as policy, reference and scorer.

    Parameters that control the LoRA adapter (used when no ``peft_config`` is passed to the trainer). TRL's
    ``ModelConfig`` has fields of the same names; ``hf-patchdist train-rewriter`` therefore parses these four
    here, in the config, and pairs the config with ``RewriterModelConfig`` (``ModelConfig``'s model options without
    its LoRA fields), so ``--lora_r 16`` on the command line and ``RewriterGRPOConfig(..., lora_r=16)`` in
    Python set the same field:

        lora_r (`int`, defaults to `64`):
            LoRA rank (the authors' value). Use a small rank (8-16) for small committed adapters.
        lora_alpha (`int`, defaults to `32`):
            LoRA alpha (the authors' value).
        lora_dropout (`float`, defaults to `0.05`):
            LoRA dropout.
        lora_target_modules (`list[str]`, `"all-linear"` or `None`, defaults to `"all-linear"`):
            Modules that get an adapter: all linear layers of the backbone (as in the authors' code), a list of
            module names, or ``None`` for PEFT's default for the architecture. The command line takes names
            (``--lora_target_modules q_proj v_proj``); a list holding only ``"all-linear"`` becomes the string
            PEFT expects, and from Python the string itself works as before.
    """

    beta: float = field(default=0.001, metadata={"help": "KL coefficient to pi_0 (the authors use 0.001)."})
    learning_rate: float = field(default=3e-6, metadata={"help": "AdamW learning rate (the authors use 3e-6)."})
    num_generations: int | None = field(default=4, metadata={"help": "Group size K: candidates per prompt."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Completions per device per step."})
    max_completion_length: int | None = field(default=256, metadata={"help": "Maximum tokens of a rewrite."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N steps."})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Epochs over the prompts (the authors use 2)."})

    lambda_dist: float = field(default=0.35, metadata={"help": "Weight of r_dist."})
    lambda_div: float = field(default=0.5, metadata={"help": "Weight of r_div."})
    verifier: dict | str | None = field(
        default_factory=lambda: dict(GRPO_GATE),
        metadata={"help": "The gate: a verifier name ('math', 'choice', 'exact', 'regex') or its to_dict() as JSON."},
    )
    judge_model: str | None = field(default=None, metadata={"help": "'pi0' or a judge model; None: no judge."})
    judge_threshold: float = field(default=0.5, metadata={"help": "Judge acceptance threshold."})
    prompt_template: str = field(default=DEFAULT_PROMPT_TEMPLATE, metadata={"help": "Rewriting prompt template."})
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system turn."})
    qa_template: str | None = field(default=None, metadata={"help": "QA(q) template; None: chat template."})
    question_column: str | None = field(default=None, metadata={"help": "Plain question column."})
    answer_column: str | None = field(default=None, metadata={"help": "Plain answer column."})
    scorer_model: str | None = field(default=None, metadata={"help": "Separate pi_0 scorer model; None: shared backbone."})

    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    # A list for the parser (it reads a string default as no default); __post_init__ makes it "all-linear" again.
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: [ALL_LINEAR],
        metadata={"help": "LoRA target modules: 'all-linear', module names, or None for PEFT's default."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.verifier, str) and self.verifier.lstrip().startswith("{"):
            self.verifier = json.loads(self.verifier)
        # An unknown name or option fails here, not after the model has loaded; so does a callable named by an
        # import path (from a YAML file or --verifier JSON) without trust_remote_code.
        get_verifier(self.verifier, trust_remote_code=self.trust_remote_code)
        if isinstance(self.lora_target_modules, (list, tuple)) and list(self.lora_target_modules) == [ALL_LINEAR]:
            self.lora_target_modules = ALL_LINEAR
        apply_hardware_precision(self)
        super().__post_init__()
