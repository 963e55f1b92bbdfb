"""Configuration of :class:`~hf_patchdist.trainers.RewriterTrainer` (Stage I: training the rewriting agent with GRPO)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from trl import GRPOConfig

from ..models import apply_hardware_precision
from ..rewards import running_mean_for
from ..rewriter.config import DEFAULT_PROMPT_TEMPLATE
from ..verifiers import GRPO_GATE, get_verifier
from .rollout import ROLLOUT_ENGINES, unsupported_sampling_options

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
        diversity_centering (`str`, defaults to `"running_mean"`):
            Where r_div's cosines are measured from. ``"running_mean"``: the pi_0 embeddings are centred on a
            running mean of the feasible candidates of earlier steps (never the group's own mean, which would make
            any two members opposite), updated after each step's rewards and saved with every checkpoint
            (``patch_reward_state.json``) so that a resumed run computes the same rewards. ``"none"``: raw cosines,
            as in the paper; mean-pooled embeddings of SmolLM2-135M rewrites are nearly parallel, and r_div then
            averaged 0.003 on GSM8K rollouts, too small to matter next to r_dist.
        diversity_centering_momentum (`float`, defaults to `0.99`):
            Momentum of the running mean: a cumulative mean until ``1 / (1 - momentum)`` feasible candidates have
            been seen, then an exponential moving average.
        verifier (`dict`, `str` or `None`, defaults to `{"name": "math", "strict": True, "max_reference_copy": 0.7, "min_step_ratio": 0.6, "require_grounded_operands": True}`):
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

    Parameters that control the training summary:

        patch_summary_steps (`int`, defaults to `10`):
            Every this many steps, add a summary of the window's rollouts to the Trainer's logs (so it lands in
            ``log_history`` and every ``report_to`` backend) and print it as one line: ``patch_summary/feasible_fraction``,
            ``patch_summary/zero_spread_fraction`` (groups whose rewards are all equal, which give GRPO no gradient),
            ``patch_summary/mean_completion_length`` (tokens), ``patch_summary/rejected/<reason>`` (fraction of the
            window's candidates), ``patch_summary/copy_share`` (feasible candidates that keep half or more of the
            expert answer's words in order) and ``patch_summary/reference_similarity`` (their mean share). It is added
            to the first log at or after the step, so with ``logging_steps`` that does not divide it the window is
            longer; the last window is logged at the end of training. ``0`` turns it off. Only with the default reward
            (:class:`~hf_patchdist.rewards.PatchReward`, or a ``PatchReward`` among the ``reward_funcs``).

    Parameters that control how the rollouts are generated:

        rollout_engine (`str` or `None`, defaults to `None`):
            ``"decode_loop"``: the project's decode loop on the policy itself
            (:class:`~hf_patchdist.trainers.rollout.DecodeLoopRollout`, passed to TRL as its ``rollout_func``): each
            distinct prompt is prefilled once and its K candidates share its keys and values, finished rows leave the
            batch. It samples with ``temperature``, ``top_p`` and ``top_k`` and refuses ``min_p``,
            ``repetition_penalty`` and ``generation_kwargs``, which it does not apply. ``"trl"``: TRL's own generation
            (``model.generate`` on the K-times repeated prompts, or its continuous batching with
            ``use_transformers_continuous_batching``, or vLLM with ``use_vllm``). ``None`` is ``"trl"``: on the example's settings on a
            2-core CPU (``benchmarks/results/grpo_step_time.json``) TRL's ``generate`` steps took 43.6 s, the decode loop's 45.6 s;
            with 2 prompts of K = 4 a step there is little prefill to share, and generation is under half of a step.
            A ``rollout_func`` passed to the trainer wins over this field.
        rollout_stop_at_final_answer (`bool`, defaults to `True`):
            With the decode loop, end a completion at the end of its final-answer line (the gate's
            ``final_answer_end``), as the Rewriter does at Stage II; TRL's ``generate`` runs on to the end-of-sequence
            token or ``max_completion_length``, and the strict gate fails whatever follows the final-answer line. Such
            a completion does not end in an end-of-sequence token, so TRL counts it in ``completions/clipped_ratio``;
            it cannot be combined with ``mask_truncated_completions``, which would drop it from the loss.

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
    diversity_centering: str = field(
        default="running_mean",
        metadata={"help": "r_div's embeddings centred on a running mean ('running_mean', saved with checkpoints) or raw ('none')."},
    )
    diversity_centering_momentum: float = field(default=0.99, metadata={"help": "Momentum of r_div's running mean."})
    patch_summary_steps: int = field(
        default=10, metadata={"help": "Log and print a summary of the rollouts (feasible, zero-spread, rejections, copies) every N steps; 0: off."}
    )
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

    rollout_engine: str | None = field(
        default=None,
        metadata={"help": "Rollouts: 'decode_loop' (shared prefill, finished rows leave), 'trl' (TRL's own generation); "
                  "None: trl (until a clean measurement says otherwise)."},
    )
    rollout_stop_at_final_answer: bool = field(
        default=True, metadata={"help": "Decode loop: end a completion after its final-answer line."}
    )

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
        running_mean_for(self.diversity_centering, self.diversity_centering_momentum)  # checked before the model loads
        if self.patch_summary_steps < 0:
            raise ValueError(f"patch_summary_steps must be 0 (off) or positive, got {self.patch_summary_steps}")
        if isinstance(self.lora_target_modules, (list, tuple)) and list(self.lora_target_modules) == [ALL_LINEAR]:
            self.lora_target_modules = ALL_LINEAR
        apply_hardware_precision(self)
        super().__post_init__()
        self.rollout_engine = resolve_rollout_engine(self)


def resolve_rollout_engine(args: RewriterGRPOConfig) -> str:
    """The rollout engine ``args`` asks for (``rollout_engine=None``: the default for this machine), checked."""
    engine = args.rollout_engine
    if engine is not None and engine not in ROLLOUT_ENGINES:
        raise ValueError(f"rollout_engine must be one of {ROLLOUT_ENGINES} or None, got {engine!r}")
    others = [name for name in ("use_vllm", "use_transformers_continuous_batching") if getattr(args, name, False)]
    unsupported = unsupported_sampling_options(args)
    masked = args.mask_truncated_completions and args.rollout_stop_at_final_answer
    if engine is None:
        # TRL's generation: the decode loop was not faster per step on a quiet 2-core CPU (benchmarks/grpo_step_time.py).
        return "trl"
    if engine == "decode_loop":
        if others:
            raise ValueError(f"rollout_engine='decode_loop' generates with the policy itself; unset {' and '.join(others)} or use rollout_engine='trl'.")
        if unsupported:
            raise ValueError(
                f"rollout_engine='decode_loop' does not apply {', '.join(unsupported)}: leave them at their defaults or "
                "use rollout_engine='trl'."
            )
        if masked:
            raise ValueError(
                "mask_truncated_completions would drop every completion the decode loop ends at its final-answer line "
                "(it ends without an end-of-sequence token): set rollout_stop_at_final_answer=False or use rollout_engine='trl'."
            )
    return engine
