"""Stage I: train the rewriting agent (a LoRA on the frozen backbone) with GRPO."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import GRPOTrainer

from ..formats import detect_dataset_format, read_example
from ..judge import LLMJudge
from ..models import DEFAULT_MODEL, base_model_record, load_model_and_tokenizer, model_context_length
from ..rewards import QA_CONTEXT_COLUMN, GroupReward, PatchReward, qa_context_value
from ..rewriter import Rewriter, RewriterConfig, build_prompt_messages
from ..rewriter.limits import TOO_LONG
from ..hub.cards import save_rewriter_folder
from ..scoring import QAScorer
from ..verifiers import get_verifier, stage_ii_gate
from .rewriter_grpo_config import RewriterGRPOConfig
from .rollout import DecodeLoopRollout
from .rollout_summary import SUMMARY_PREFIX, RolloutSummary, summary_line


logger = logging.getLogger(__name__)

REWARD_STATE_NAME = "patch_reward_state.json"
"""File in each checkpoint folder holding the rewards' state (r_div's running embedding mean)."""


def reward_states(reward_funcs: Any) -> dict[str, Any]:
    """The state of each stateful reward, keyed by its position in ``reward_funcs``."""
    states = {str(i): reward.state_dict() for i, reward in enumerate(reward_funcs) if isinstance(reward, GroupReward)}
    return {key: state for key, state in states.items() if state}


class RewardStateCallback(TrainerCallback):
    """Writes the rewards' state (:data:`REWARD_STATE_NAME`) into every checkpoint the Trainer saves.

    :meth:`RewriterTrainer.train` reads it back when resuming, so that a resumed run centres r_div on the
    same running mean (and computes the same rewards) as an uninterrupted one.
    """

    def __init__(self, reward_funcs: Any) -> None:
        self.reward_funcs = reward_funcs

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        states = reward_states(self.reward_funcs)
        if states and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if folder.is_dir():
                (folder / REWARD_STATE_NAME).write_text(json.dumps(states))


def check_group_placement(args: RewriterGRPOConfig) -> None:
    """Refuse settings under which a prompt's K completions would be scored on different processes.

    TRL gives each process ``per_device_train_batch_size * steps_per_generation`` consecutive
    completions of the generation batch and calls the rewards on them before gathering; GRPOConfig
    only checks that the *global* generation batch is a multiple of K. Group-aware rewards (r_dist,
    r_div) need whole groups on each process.
    """
    local = args.per_device_train_batch_size * args.steps_per_generation
    if local % args.num_generations != 0:
        raise ValueError(
            f"Each process scores per_device_train_batch_size * steps_per_generation = "
            f"{args.per_device_train_batch_size} * {args.steps_per_generation} = {local} completions, which is not a "
            f"multiple of num_generations = {args.num_generations}: a prompt's group would be split between "
            f"processes and the group rewards would be wrong. Set per_device_train_batch_size (or "
            f"steps_per_generation / gradient_accumulation_steps) so that the product is a multiple of "
            f"{args.num_generations}."
        )


def backbone_init_kwargs(args: RewriterGRPOConfig) -> dict[str, Any]:
    """How a backbone given by name is loaded, following ``GRPOTrainer`` (``trl.trainer.utils.create_model_from_path``).

    ``args.model_init_kwargs`` go to ``from_pretrained`` (``dtype``, ``revision``, ``attn_implementation``,
    ``device_map``...), with ``trust_remote_code`` from the config. ``dtype`` takes a ``torch.dtype`` or a name
    (``"bfloat16"``, ``"float16"``, ``"float32"``); ``"auto"`` or none is this package's choice for the device
    training runs on (``args.device``, not the CPU it loads on): bfloat16 where that device computes it, else
    float32. (TRL reads ``"auto"`` as the checkpoint's dtype and defaults to float32.) Placement is TRL's: no
    ``device_map`` under several processes or on CPU/MPS (the Trainer, through accelerate, moves the model to
    its device), ``"auto"`` on a single accelerator unless ``device_map`` is given.
    """
    init_kwargs = dict(args.model_init_kwargs or {})
    init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
    device = args.device  # first: it sets up args.distributed_state
    init_kwargs["device"] = str(device)
    if getattr(getattr(args, "distributed_state", None), "distributed_type", None) in ("MULTI_GPU", "DEEPSPEED"):
        init_kwargs["device_map"] = None
    else:
        init_kwargs.setdefault("device_map", None if device.type in ("cpu", "mps") else "auto")
    return init_kwargs


def _render(tokenizer: Any, messages: list[dict[str, Any]]) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def check_parameter_sharding(args: Any, accelerator_state: Any = None) -> None:
    """Refuse DeepSpeed ZeRO-3 and FSDP, which shard the backbone's parameters over the processes.

    Reward scoring runs pi_0 forwards only for the feasible candidates of each process, so processes run
    different numbers of forwards, and the collective parameter gathers of ZeRO-3 and FSDP would wait
    forever; under FSDP the scorer bound to the unwrapped model would also see sharded parameters, and
    :meth:`RewriterTrainer.save_rewriter` saves the main process's unwrapped model, which holds no
    weights under ZeRO-3. DDP and ZeRO-1/2 keep whole parameters on every process.

    Args:
        args: The training arguments (``deepspeed_plugin``, ``fsdp_plugin_args``), before the trainer is built.
        accelerator_state: ``accelerator.state`` once built (``deepspeed_plugin``, ``fsdp_plugin``).
    """
    deepspeed = getattr(accelerator_state, "deepspeed_plugin", None) or getattr(args, "deepspeed_plugin", None)
    found = None
    if getattr(deepspeed, "zero_stage", None) == 3:
        found = "DeepSpeed ZeRO-3"
    elif (
        getattr(accelerator_state, "fsdp_plugin", None) is not None
        or getattr(args, "fsdp_plugin_args", None)
        or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")
    ):
        found = "FSDP"
    if found is not None:
        raise ValueError(
            f"RewriterTrainer does not support {found}: it shards the backbone's parameters, and the pi_0 reward "
            "scoring runs forwards only for each process's feasible candidates, so the processes would run different "
            "numbers of forwards and the parameter gathers would hang (and the saved adapter would be empty). "
            "Run it with DDP (`accelerate launch --multi_gpu`, torchrun) or DeepSpeed ZeRO-1/ZeRO-2, which keep "
            "whole parameters on every process; the trained part is a LoRA on a frozen backbone, so the optimizer "
            "state that ZeRO-1/2 shards is already small."
        )


def _keep_reference_at_pi0(model: Any) -> None:
    """Remove the frozen copy of a given adapter that TRL makes its KL reference (beta > 0).

    TRL anchors the KL of a passed ``PeftModel`` to a copy of its adapter (``"ref"``); the design anchors it
    to pi_0, the backbone with the adapter off, which the rewards score under too. Without a ``"ref"``
    adapter TRL computes the reference log-probabilities with the adapters disabled.
    """
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")
        model.set_adapter("default")


class RewriterTrainer(GRPOTrainer):
    """GRPO trainer of the rewriting agent: a LoRA "patch" on a frozen instruct backbone.

    Builds the rewriting prompts from any TRL data set format (the same format layer and prompt as
    :class:`~hf_patchdist.rewriter.Rewriter`), adds the columns the group-aware rewards read
    (``question``, ``expert_answer``, ``patch_row_id``, and ``qa_context``, the row's system prompt and earlier
    turns, so that r_dist scores the NLL under the same QA(q) as Stage II), and uses :class:`~hf_patchdist.rewards.PatchReward`
    by default. One copy of the backbone serves as policy (adapter on), KL reference and pi_0
    scorer (adapter off).

    Args:
        model: The backbone: the embedded alias (default), a Hub id, a folder, or a loaded model. A name is
            loaded with ``args.model_init_kwargs`` (``dtype``, ``revision``, ``attn_implementation``...), as
            ``GRPOTrainer`` does, and placed as it does (:func:`backbone_init_kwargs`); without a ``dtype`` there (or
            ``"auto"``), in bfloat16 where the device training runs on computes it.
        args: A :class:`RewriterGRPOConfig`.
        train_dataset: Questions with expert answers, in any format the Rewriter reads. Rows without a
            usable question/answer, and rows whose rewriting prompt plus ``max_completion_length`` does not fit
            the model's context (``too_long``), are left out, with a warning counting them by reason.
        reward_funcs: Reward callables; default ``[PatchReward(...)]`` from the config's weights and gate.
        peft_config: A ``peft.LoraConfig``; default one from the config's ``lora_*`` fields, unless ``model``
            is a ``PeftModel`` (a warm-started adapter, loaded with ``is_trainable=True``): that adapter is
            trained, and the KL reference stays pi_0 (adapter off), not a copy of the warm start.
        processing_class: Tokenizer (loaded with the model by default).
        **kwargs: Passed to ``trl.GRPOTrainer``.

    Example:
        ```python
        from datasets import load_dataset
        from hf_patchdist import RewriterTrainer, RewriterGRPOConfig

        gsm8k = load_dataset("openai/gsm8k", "main", split="train[1000:1400]")
        args = RewriterGRPOConfig("gsm8k-rewriter", max_steps=40, lora_r=16)
        trainer = RewriterTrainer(model="smollm2-135m-instruct", args=args, train_dataset=gsm8k)
        trainer.train()
        trainer.rewriter.push_to_hub("me/gsm8k-rewriter")
        ```
    """

    _tag_names = ["trl", "grpo", "hf-patchdist", "rewriter"]

    def __init__(
        self,
        model: Any = None,
        args: RewriterGRPOConfig | None = None,
        train_dataset: Any = None,
        reward_funcs: Any = None,
        peft_config: Any = None,
        processing_class: Any = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            args = RewriterGRPOConfig("rewriter-grpo")
        if not isinstance(args, RewriterGRPOConfig):
            raise TypeError(f"args must be a RewriterGRPOConfig, got {type(args).__name__}")
        check_group_placement(args)
        check_parameter_sharding(args)
        if train_dataset is None:
            raise ValueError("RewriterTrainer needs a train_dataset of questions with expert answers.")

        # Recorded as given (the embedded alias stays an alias, with its GGUF hash) before loading.
        base_model_name = str(model or DEFAULT_MODEL) if model is None or isinstance(model, (str, os.PathLike)) else None
        init_kwargs = None
        if model is None or isinstance(model, (str, os.PathLike)):
            init_kwargs = backbone_init_kwargs(args)
            model, loaded_tokenizer = load_model_and_tokenizer(str(model or DEFAULT_MODEL), **init_kwargs)
            processing_class = processing_class or loaded_tokenizer
        elif processing_class is None:
            raise ValueError("Pass processing_class (the tokenizer) together with a loaded model.")
        if processing_class.pad_token is None:
            processing_class.pad_token = processing_class.eos_token

        # A PeftModel (a warm-started adapter) is trained as it is: TRL refuses a second adapter config for it.
        given_peft_model = bool(getattr(model, "peft_config", None))
        if given_peft_model and not any(p.requires_grad for p in model.parameters()):
            raise ValueError(
                "The PeftModel passed as model has no trainable parameter: load its adapter with "
                "PeftModel.from_pretrained(base_model, folder, is_trainable=True)."
            )
        if peft_config is None and not given_peft_model:
            from peft import LoraConfig

            peft_config = LoraConfig(
                r=args.lora_r,
                lora_alpha=args.lora_alpha,
                lora_dropout=args.lora_dropout,
                target_modules=args.lora_target_modules,
                task_type="CAUSAL_LM",
            )

        self.rewriter_config = self._build_rewriter_config(args, base_model_name or model)
        # Checked against args.trust_remote_code just above (or from a Python object): the Stage II dict derived
        # from it is built without asking again, and kept as an object for the in-memory `rewriter`.
        self._stage_ii_gate = get_verifier(self.rewriter_config.verifier, trust_remote_code=True)
        train_dataset = self._prepare_dataset(train_dataset, args, processing_class, model_context_length(model))

        if reward_funcs is None:
            reward_funcs = [
                PatchReward(
                    self._training_gate,
                    lambda_dist=args.lambda_dist,
                    lambda_div=args.lambda_div,
                    qa_template=args.qa_template,
                    diversity_centering=args.diversity_centering,
                    centering_momentum=args.diversity_centering_momentum,
                )
            ]
        elif not isinstance(reward_funcs, list):
            reward_funcs = [reward_funcs]
        judge = None
        if args.judge_model is not None:
            judge = LLMJudge(None if args.judge_model == "pi0" else args.judge_model, threshold=args.judge_threshold)
        for reward in reward_funcs:
            if isinstance(reward, GroupReward) and judge is not None and reward.judge is None:
                reward.judge = judge

        if args.rollout_engine == "decode_loop" and kwargs.get("rollout_func") is None:
            stop = get_verifier(args.verifier).final_answer_end if args.rollout_stop_at_final_answer else None
            kwargs["rollout_func"] = DecodeLoopRollout(stop)

        # GRPOTrainer warns that a loaded model ignores `model_init_kwargs`: here they were used to load it.
        given_init_kwargs = args.model_init_kwargs
        if init_kwargs is not None:
            args.model_init_kwargs = None
        try:
            with warnings.catch_warnings():
                # TRL calls rollout_func experimental: the warning is for a user's own function, not the decode loop.
                if isinstance(kwargs.get("rollout_func"), DecodeLoopRollout):
                    warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
                super().__init__(
                    model=model,
                    reward_funcs=reward_funcs,
                    args=args,
                    train_dataset=train_dataset,
                    processing_class=processing_class,
                    peft_config=peft_config,
                    **kwargs,
                )
        finally:
            args.model_init_kwargs = given_init_kwargs
        if given_peft_model:
            _keep_reference_at_pi0(self.accelerator.unwrap_model(self.model))

        check_parameter_sharding(args, self.accelerator.state)  # a plugin accelerate built from its own config
        # pi_0 is the trained backbone with the adapter disabled, unless a separate scorer is named.
        scorer = None
        if args.scorer_model is not None:
            scorer_model, scorer_tokenizer = load_model_and_tokenizer(args.scorer_model, device=str(self.accelerator.device))
            scorer = QAScorer(scorer_model, scorer_tokenizer)
        policy = self.accelerator.unwrap_model(self.model)
        for reward in self.reward_funcs:
            if isinstance(reward, GroupReward):
                if scorer is not None and reward.scorer is None:
                    reward.scorer = scorer
                reward.bind(policy, self.processing_class)
                if reward.embedding_mean is not None and self.accelerator.num_processes > 1:
                    from accelerate.utils import gather_object

                    reward.gather = gather_object  # one running mean, the same on every process
        self.add_callback(RewardStateCallback(self.reward_funcs))
        self.rollout_summary: RolloutSummary | None = None
        patch_rewards = [reward for reward in self.reward_funcs if isinstance(reward, PatchReward)]
        if args.patch_summary_steps and patch_rewards:
            self.rollout_summary = RolloutSummary()
            patch_rewards[0].listeners.append(self.rollout_summary)
        self._summary_start_step = 0

    # ------------------------------------------------------------------ data
    @staticmethod
    def _build_rewriter_config(args: RewriterGRPOConfig, model: Any) -> RewriterConfig:
        name = None
        if isinstance(model, (str, os.PathLike)):
            name = str(model)
        record = base_model_record(name) if name else {"base_model": getattr(model.config, "_name_or_path", "")}
        # The saved rewriter keeps the Stage II gate: the training gate without its GRPO-only checks
        # (trailing text is trimmed at data-building time, and a copy of the expert answer is kept).
        verifier = stage_ii_gate(get_verifier(args.verifier, trust_remote_code=args.trust_remote_code).to_dict())
        return RewriterConfig(
            **record,
            prompt_template=args.prompt_template,
            system_prompt=args.system_prompt,
            qa_template=args.qa_template,
            verifier=verifier,
            lambda_dist=args.lambda_dist,
            lambda_div=args.lambda_div,
            has_adapter=True,
        )

    def _prepare_dataset(self, dataset: Any, args: RewriterGRPOConfig, tokenizer: Any = None, context: int | None = None) -> Any:
        spec = detect_dataset_format(dataset, question_column=args.question_column, answer_column=args.answer_column)
        verifier = self._training_gate = get_verifier(args.verifier, trust_remote_code=args.trust_remote_code)
        rewriter_config = self.rewriter_config

        def to_grpo_row(row: dict[str, Any], index: int) -> dict[str, Any]:
            example = read_example(row, spec)
            error = example.error or verifier.check_reference(example.answer)
            if error is None and tokenizer is not None and context is not None:
                # TRL neither truncates prompts nor stops at the context: a prompt plus max_completion_length
                # that does not fit the model would generate (and be trained) past its positions.
                prompt_tokens = len(tokenizer(_render(tokenizer, build_prompt_messages(rewriter_config, example)), add_special_tokens=False)["input_ids"])
                if prompt_tokens + int(args.max_completion_length or 0) > context:
                    error = TOO_LONG
            return {
                "prompt": build_prompt_messages(rewriter_config, example) if error is None else [],
                "question": example.question or "",
                "expert_answer": example.answer or "",
                "patch_row_id": index,
                QA_CONTEXT_COLUMN: qa_context_value(example.context),  # pi_0 scores under QA(q) with it, as Stage II
                "patch_error": error or "",
            }

        mapped = dataset.map(to_grpo_row, with_indices=True, remove_columns=dataset.column_names, desc="Building rewriting prompts")
        errors = Counter(e for e in mapped["patch_error"] if e)
        if errors:
            logger.warning(
                "RewriterTrainer leaves out %d of %d rows that cannot be rewritten: %s",
                sum(errors.values()),
                len(mapped),
                dict(errors),
            )
        self.skipped_rows = dict(errors)
        kept = mapped.filter(lambda e: not e, input_columns="patch_error").remove_columns("patch_error")
        if len(kept) == 0:
            raise ValueError(f"No row of the training set can be rewritten: {dict(errors)}")
        return kept

    # ------------------------------------------------------------------ outputs
    @property
    def rewriter(self) -> Rewriter:
        """A :class:`Rewriter` on the trained adapter (in memory), e.g. for ``push_to_hub``."""
        config = RewriterConfig.from_dict(self.rewriter_config.to_dict())
        config.training_summary = self.training_summary()
        rewriter = Rewriter(self.accelerator.unwrap_model(self.model), self.processing_class, config=config, verifier=self._stage_ii_gate)
        return rewriter

    def training_summary(self) -> dict[str, Any]:
        """Steps, group size, reward weights and the last logged reward means."""
        summary: dict[str, Any] = {
            "global_step": int(self.state.global_step),
            "num_generations": self.args.num_generations,
            "learning_rate": self.args.learning_rate,
            "beta": self.args.beta,
            "lambda_dist": self.args.lambda_dist,
            "lambda_div": self.args.lambda_div,
            "max_completion_length": self.args.max_completion_length,
            "train_rows": len(self.train_dataset),
            "skipped_rows": self.skipped_rows,
        }
        logs = [entry for entry in self.state.log_history if "reward" in entry]
        if logs:
            last = logs[-1]
            keys = ("reward", "patch/r_dist", "patch/r_div", "patch/feasible_fraction", "completions/mean_length")
            summary["final_logs"] = {k: last[k] for k in keys if k in last}
        return summary

    def save_rewriter(self, folder: str | os.PathLike | None = None) -> Path:
        """Write what ``Rewriter.from_pretrained(folder)`` loads: the LoRA adapter, ``rewriter_config.json`` and a model card."""
        folder = Path(folder or self.args.output_dir)
        if self.accelerator.is_main_process:
            config = RewriterConfig.from_dict(self.rewriter_config.to_dict())
            config.training_summary = self.training_summary()
            save_rewriter_folder(folder, config, self.accelerator.unwrap_model(self.model))
        return folder

    # ------------------------------------------------------------------ checkpoints and logs
    def load_reward_state(self, checkpoint: str | os.PathLike) -> bool:
        """Restore the rewards' state saved in ``checkpoint`` (r_div's running mean); False when it holds none."""
        path = Path(checkpoint) / REWARD_STATE_NAME
        if not path.is_file():
            return False
        states = json.loads(path.read_text())
        for key, state in states.items():
            index = int(key)
            if index >= len(self.reward_funcs) or not isinstance(self.reward_funcs[index], GroupReward):
                raise ValueError(f"{path} holds the state of reward {index}, which is not a GroupReward in this trainer's reward_funcs.")
            self.reward_funcs[index].load_state_dict(state)
        return True

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's logging, plus the rollout summary every ``patch_summary_steps`` steps (and at the end of training)."""
        summary, every = self.rollout_summary, self.args.patch_summary_steps
        step = int(self.state.global_step)
        # Decided from the step alone: every process reaches the same decision, and the gather below lines up.
        due = every and step > self._summary_start_step and (step - self._summary_start_step >= every or "train_runtime" in logs)
        if summary is not None and due and self.model.training:
            from accelerate.utils import gather_object

            counts = gather_object([summary.counts()]) if self.accelerator.num_processes > 1 else [summary.counts()]
            summary.reset()
            metrics = RolloutSummary.metrics(counts)
            if metrics[SUMMARY_PREFIX + "candidates"]:
                logs = {**logs, **metrics}
                if self.accelerator.is_main_process:
                    print(summary_line(metrics, self._summary_start_step + 1, step), flush=True)
            self._summary_start_step = step
        super().log(logs, start_time)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        checkpoint = kwargs.get("resume_from_checkpoint", args[0] if args else None)
        if isinstance(checkpoint, bool):
            checkpoint = get_last_checkpoint(self.args.output_dir) if checkpoint else None
        if checkpoint is not None:
            self.load_reward_state(checkpoint)
            trainer_state = Path(checkpoint) / "trainer_state.json"
            self._summary_start_step = int(json.loads(trainer_state.read_text()).get("global_step", 0)) if trainer_state.is_file() else 0
        if self.rollout_summary is not None:
            self.rollout_summary.reset()
        output = super().train(*args, **kwargs)
        self.save_rewriter(self.args.output_dir)
        if self.args.push_to_hub and self.accelerator.is_main_process:
            repo_id = self.args.hub_model_id or Path(self.args.output_dir).name
            self.rewriter.push_to_hub(repo_id, private=self.args.hub_private_repo, token=self.args.hub_token)
        return output

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True, **kwargs: Any) -> Any:
        """Push the rewriter (adapter, ``rewriter_config.json``, card) to ``hub_model_id``."""
        repo_id = self.args.hub_model_id or Path(self.args.output_dir).name
        return self.rewriter.push_to_hub(repo_id, private=self.args.hub_private_repo, token=self.args.hub_token, commit_message=commit_message)
