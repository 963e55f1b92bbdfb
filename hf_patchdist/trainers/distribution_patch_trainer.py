"""Stage II as a drop-in replacement for ``trl.SFTTrainer``: patch the training targets once, then train as usual.

At construction, :class:`DistributionPatchTrainer` runs Generate-Verify-Fallback over ``train_dataset`` through
``datasets.map`` (each expert answer is rewritten in the words of pi_0, kept when the task-consistency gate
passes, otherwise the expert answer stays), caches the patched set on disk, and hands it to ``SFTTrainer``.
Everything else, the training loop, losses, PEFT, logging and saving, is TRL's.
"""

from __future__ import annotations

import logging
import os
import warnings
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset, IterableDataset
from transformers import PreTrainedTokenizerBase, ProcessorMixin, TrainerCallback
from trl import SFTTrainer

from ..formats import DatasetFormat, FormatSpec, detect_dataset_format, to_prompt_completion
from ..models import EMBEDDED_MODELS, patchdist_cache_dir, resolve_model_path
from ..hub.ids import base_model_text, hub_link, is_hub_repo_id
from ..rewriter import PATCH_COLUMNS, REJECTED_COLUMN, PatchResult, Rewriter
from ..rewriter.config import PAPER_ID, PAPER_TITLE
from ..patch_statistics import NO_TARGET_REASONS
from ..scoring import eval_mode
from .distribution_patch_config import DistributionPatchConfig


if TYPE_CHECKING:
    from peft import PeftConfig
    from transformers import PreTrainedModel, TrainingArguments

logger = logging.getLogger(__name__)

CARD_SECTION_TITLE = "## Distribution patch (hf-patchdist)"

# (rewriter base model, trained model) pairs already warned about: the warning is shown once per process.
_WARNED_BACKBONES: set[tuple[str, str]] = set()


class DistributionPatchTrainer(SFTTrainer):
    r"""
    `trl.SFTTrainer` that first patches the training targets into the model's own words (Stage II of "Patch the
    Distribution Mismatch: RL Rewriting Agent for Stable Off-Policy SFT", arXiv 2602.11220).

    At construction, `train_dataset` is patched once with Generate-Verify-Fallback: for every example the rewriter
    generates candidates, keeps the feasible one (same final answer, valid reasoning) with the lowest NLL under the
    base model pi_0, or falls back to the expert answer. Under `accelerate launch` or torchrun the rows are split
    over the processes, each rewrites its share, and every process trains on the whole patched set (see
    `hf_patchdist.rewriter.sharding`). The patched set is cached on disk (see
    [`DistributionPatchConfig`]), so a second construction with the same data set, rewriter and options, also in a new
    process, reads it instead of generating. `eval_dataset` is never rewritten. After that the trainer is
    `SFTTrainer`: same arguments, same training.

    Data sets in plain question/answer columns (GSM8K's `question`/`answer`, which `SFTTrainer` does not accept)
    are turned into conversational prompt-completion rows after patching (unless a `formatting_func` is given,
    which then receives the patched plain rows). The provenance columns (`patch_source`, ...) are removed before
    `SFTTrainer` sees the data, so they never reach the model's inputs; the patched set with them is kept as
    `patched_dataset`. Rows without a question or an answer (None or blank) are left out of SFT, which would train
    them on an empty target: one warning and `patch_statistics.dropped` count them. When no rewrite at all was
    accepted a warning says that the training is plain SFT on the expert answers.

    Args:
        model (`str`, `PreTrainedModel` or `PeftModel`):
            As for `SFTTrainer`; the embedded alias `"smollm2-135m-instruct"` is accepted too.
        args (`DistributionPatchConfig`, `SFTConfig` or `TrainingArguments`, *optional*):
            Training configuration. With an `SFTConfig`, the patch options take their defaults.
        data_collator, train_dataset, eval_dataset, processing_class, compute_loss_func, compute_metrics, callbacks,
        optimizers, optimizer_cls_and_kwargs, preprocess_logits_for_metrics, quantization_config, peft_config,
        formatting_func:
            As for `SFTTrainer`. `train_dataset` must be a `datasets.Dataset` in a format the rewriter reads: a
            `messages` column, `prompt`/`completion` columns (standard or conversational) or plain question/answer
            columns.
        rewriter (`Rewriter`, `str` or `None`, *optional*):
            The rewriter: a [`Rewriter`], or a local folder or Hub id holding `rewriter_config.json` (a trained
            RL rewriter). `None` uses the prompted rewriter (no adapter, the prior-art baseline) on the model being
            trained: the same loaded model object, or the same name, before any training step, so it is pi_0. A
            rewriter on another backbone works but is not the paper's setting: a warning says so, once.

    Attributes:
        rewriter (`Rewriter`): A copy of the rewriter used, without a model it loaded by name (not kept in memory
            during training); None when `train_dataset` came already patched.
        patched_dataset (`datasets.Dataset`): The patched training set in its input format, with provenance columns.
        patch_statistics (`PatchStatistics`): Rows, rewritten, fallbacks by reason, mean pi_0 NLL before/after.
        patch_result (`PatchResult`): Cache key, cache folder and whether the set came from the cache.

    Example:
        ```python
        from datasets import load_dataset
        from trl import SFTConfig
        from hf_patchdist import DistributionPatchTrainer, Rewriter

        dataset = load_dataset("openai/gsm8k", "main", split="train[:800]")
        trainer = DistributionPatchTrainer(
            model="HuggingFaceTB/SmolLM2-135M-Instruct",
            args=SFTConfig(output_dir="smollm2-gsm8k-patched"),
            train_dataset=dataset,
            rewriter="org/smollm2-rewriter",  # or a Rewriter, or None for the prompted rewrite
        )
        print(trainer.patch_statistics.summary())
        trainer.train()
        ```
    """

    _tag_names = ["trl", "sft", "hf-patchdist"]
    _name = "SFT on distribution-patched targets"
    _paper = {"title": PAPER_TITLE, "id": PAPER_ID}

    def __init__(
        self,
        model: str | PreTrainedModel | Any,
        args: DistributionPatchConfig | TrainingArguments | None = None,
        data_collator: Callable | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | Mapping[str, Dataset] | None = None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        compute_loss_func: Callable | None = None,
        compute_metrics: Callable | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[Any, Any] = (None, None),
        optimizer_cls_and_kwargs: tuple[type, dict[str, Any]] | None = None,
        preprocess_logits_for_metrics: Callable | None = None,
        quantization_config: Any = None,
        peft_config: PeftConfig | None = None,
        formatting_func: Callable[[dict], str] | None = None,
        rewriter: Rewriter | str | os.PathLike | None = None,
    ) -> None:
        if args is None:
            name = model if isinstance(model, str) else _config_model_id(model)
            args = DistributionPatchConfig(f"{Path(name or 'model').name}-SFT")
        options = _PatchOptions.from_args(args)

        # Everything that can be wrong with the input is checked before anything is loaded or generated.
        _check_train_dataset(train_dataset)
        already_patched = set(PATCH_COLUMNS) <= set(train_dataset.column_names)
        question_column = options.question_column or getattr(rewriter, "question_column", None)
        answer_column = options.answer_column or getattr(rewriter, "answer_column", None)
        try:
            spec = detect_dataset_format(train_dataset, question_column=question_column, answer_column=answer_column)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__} cannot patch `train_dataset`: {error}") from error

        if already_patched:
            # The user ran `dataset.map(rewriter)` already: train on that, and say so if a rewriter was given too.
            if rewriter is not None:
                logger.warning("train_dataset already holds the patch columns %s: it is not patched again.", PATCH_COLUMNS)
            resolved = rewriter if isinstance(rewriter, Rewriter) else None
            result = PatchResult.of(train_dataset)
        else:
            resolved = _resolve_rewriter(rewriter, model, processing_class, options, args)
            if rewriter is not None:
                _warn_if_other_backbone(resolved, model)
            with eval_mode(model):
                # Under accelerate launch / torchrun each process rewrites its share of the rows and all get
                # the whole patched set (no process idles at a barrier while another generates).
                result = resolved.patch_dataset(
                    train_dataset, cache_dir=options.cache_dir, use_cache=options.use_cache, distributed=True
                )
            # Training must not keep the rewriter's own copy of a model loaded by name in memory.
            resolved = _released(resolved)

        self.rewriter: Rewriter | None = resolved
        self.rewriter_description = _describe_rewriter(resolved, rewriter, already_patched)
        self.patch_result = result
        self.patched_dataset = result.dataset
        self.patch_statistics = result.statistics
        self._patch_statistics_logged = False
        logger.info(
            "Patched training set (%s):\n%s",
            "from the cache" if result.from_cache else "generated",
            self.patch_statistics.summary(),
        )

        train_dataset = _training_view(_trainable_rows(result), spec, formatting_func)
        eval_dataset = _eval_view(eval_dataset, question_column, answer_column, formatting_func)
        if isinstance(model, str) and model in EMBEDDED_MODELS:
            # SFTTrainer loads models with from_pretrained, which does not know the embedded alias.
            model = resolve_model_path(model)

        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_loss_func=compute_loss_func,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            quantization_config=quantization_config,
            peft_config=peft_config,
            formatting_func=formatting_func,
        )
        self.add_callback(_PatchStatisticsCallback(self))

    # ------------------------------------------------------------------ logging and cards
    def log_patch_statistics(self) -> None:
        """Log the patch statistics through the trainer's logging (``patch/...`` keys); done once per trainer."""
        if self._patch_statistics_logged:
            return
        self._patch_statistics_logged = True
        self.log(self.patch_statistics.to_log_dict(prefix="patch/"))

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        tags: str | list[str] | None = None,
    ) -> None:
        """TRL's model card, tagged ``hf-patchdist``, with a section on the rewriter and the patch statistics.

        Args:
            model_name: Name of the model.
            dataset_name: Name of the data set used for training.
            tags: Extra tags.
        """
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        if "hf-patchdist" not in tags:
            tags.append("hf-patchdist")
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        path = Path(self.args.output_dir) / "README.md"
        if not path.is_file():
            return
        text = path.read_text(encoding="utf-8")
        if CARD_SECTION_TITLE in text:
            text = text.split(CARD_SECTION_TITLE)[0].rstrip() + "\n\n"
        section = self._model_card_section()
        # Before the citations, where a reader of "Training procedure" looks for how the data was made.
        marker = "\n## Citations"
        if marker in text:
            head, tail = text.split(marker, 1)
            text = f"{head.rstrip()}\n\n{section}\n{marker}{tail}"
        else:
            text = f"{text.rstrip()}\n\n{section}"
        path.write_text(text, encoding="utf-8")

    def _model_card_section(self) -> str:
        stats = self.patch_statistics
        lines = [
            CARD_SECTION_TITLE,
            "",
            "The training targets were patched before SFT with hf-patchdist, following "
            f"[{PAPER_TITLE}](https://huggingface.co/papers/{PAPER_ID}) (Generate-Verify-Fallback): each expert "
            "answer was rewritten into the words of the base model, the rewrite kept when it passed the "
            "task-consistency gate (same final answer, valid reasoning), otherwise the expert answer was kept. "
            "The evaluation data was not rewritten.",
            "",
            f"- Rewriter: {self.rewriter_description}",
        ]
        if self.rewriter is not None:
            lines.append(f"- Rewriter base model: {base_model_text(self.rewriter.config)}")
            # The fingerprint the targets were patched under: the model being trained may be the rewriter's.
            fingerprint = self.patch_result.rewriter_fingerprint or self.rewriter.fingerprint()
            lines.append(f"- Rewriter fingerprint: `{fingerprint}`")
        lines += [
            f"- Rewritten: {stats.rewritten} of {stats.rows} examples ({stats.acceptance_rate:.1%}); "
            f"copies of the expert answer: {stats.copied}",
            "",
            stats.to_markdown(),
            "",
        ]
        return "\n".join(lines)


class _PatchStatisticsCallback(TrainerCallback):
    """Logs the patch statistics once, when training begins (after the trainer state and loggers are set up)."""

    def __init__(self, trainer: DistributionPatchTrainer) -> None:
        self._trainer = weakref.ref(trainer)  # the trainer holds this callback: no reference cycle

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        trainer = self._trainer()
        if trainer is not None:
            trainer.log_patch_statistics()


# ---------------------------------------------------------------------- helpers
class _PatchOptions:
    """The patch options of a config; an `SFTConfig` or `TrainingArguments` gets the defaults."""

    def __init__(self, **values: Any) -> None:
        self.num_candidates: int | None = values.get("patch_num_candidates")
        self.batch_size: int | None = values.get("patch_batch_size")
        self.question_column: str | None = values.get("patch_question_column")
        self.answer_column: str | None = values.get("patch_answer_column")
        self.cache_dir: str | None = values.get("patch_cache_dir")
        self.use_cache: bool = values.get("patch_use_cache", True)

    @classmethod
    def from_args(cls, args: Any) -> _PatchOptions:
        names = ("patch_num_candidates", "patch_batch_size", "patch_question_column", "patch_answer_column", "patch_cache_dir", "patch_use_cache")
        return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def _check_train_dataset(dataset: Any) -> None:
    if dataset is None:
        raise ValueError("`train_dataset` is required: the training set to patch and train on.")
    if isinstance(dataset, IterableDataset):
        raise TypeError(
            "DistributionPatchTrainer patches the whole training set once, before training, and needs a map-style "
            "`datasets.Dataset`, got an `IterableDataset`. Load it without streaming, or patch it yourself with "
            "`dataset.map(rewriter, batched=True)` and pass the result to SFTTrainer."
        )
    if not isinstance(dataset, Dataset):
        raise TypeError(f"`train_dataset` must be a `datasets.Dataset`, got `{type(dataset).__name__}`.")
    if len(dataset) == 0:
        raise ValueError("`train_dataset` is empty: there is nothing to patch or train on.")


def _config_model_id(model: Any) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "_name_or_path", "") or "")


def _tokenizer_of(processing_class: Any) -> PreTrainedTokenizerBase | None:
    if isinstance(processing_class, ProcessorMixin):
        return processing_class.tokenizer
    return processing_class


def _resolve_rewriter(
    rewriter: Rewriter | str | os.PathLike | None,
    model: Any,
    processing_class: Any,
    options: _PatchOptions,
    args: Any,
) -> Rewriter:
    """The Rewriter to patch with, with the config's patch options applied."""
    overrides: dict[str, Any] = {
        "num_candidates": options.num_candidates,
        "question_column": options.question_column,
        "answer_column": options.answer_column,
    }
    if options.batch_size is not None:
        overrides["batch_size"] = options.batch_size
    show_progress = not getattr(args, "disable_tqdm", False)
    if rewriter is None:
        # The prompted rewrite on pi_0: the model being trained, before any training step.
        if isinstance(model, str):
            return Rewriter(model, show_progress=show_progress, **overrides)
        tokenizer = _tokenizer_of(processing_class)
        if tokenizer is None:
            from ..models import load_tokenizer

            tokenizer = load_tokenizer(_config_model_id(model) or None)
        return Rewriter(model, tokenizer, show_progress=show_progress, **overrides)
    if isinstance(rewriter, Rewriter):
        return rewriter.with_options(**overrides)
    if isinstance(rewriter, (str, os.PathLike)):
        # The config's trust_remote_code (TRL's field for model code) also lets the rewriter's config name a
        # callable verifier to import; without it such a rewriter is refused before anything is imported.
        trust = bool(getattr(args, "trust_remote_code", False))
        return Rewriter.from_pretrained(rewriter, show_progress=show_progress, trust_remote_code=trust, **overrides)
    raise TypeError(
        "`rewriter` must be a hf_patchdist.Rewriter, a local folder or Hub id holding rewriter_config.json, or None "
        f"(the prompted rewriter on the model being trained), got `{type(rewriter).__name__}`."
    )


def _released(rewriter: Rewriter) -> Rewriter:
    """A copy of the rewriter without the model it loaded by name (the caller's object keeps its own).

    ``copy.copy`` goes through ``Rewriter.__getstate__``, which drops a model loaded from a name and keeps one that
    was given as an object (often the model being trained itself, which costs nothing to keep).
    """
    import copy

    return copy.copy(rewriter)


def _model_identities(name: str | None) -> set[str]:
    """Every spelling of one model: the name, its resolved local path, and for an embedded alias its Hub original."""
    if not name:
        return set()
    name = str(name)
    ids = {name}
    if name in EMBEDDED_MODELS:
        ids.add(EMBEDDED_MODELS[name].hub_original)
        ids.add(str((patchdist_cache_dir() / "models" / name).resolve()))
    elif os.path.isdir(name):
        ids.add(str(Path(name).resolve()))
    return ids


def _warn_if_other_backbone(rewriter: Rewriter, model: Any) -> None:
    trained = model if isinstance(model, str) else _config_model_id(model)
    trained_ids = _model_identities(trained)
    rewriter_ids = _model_identities(rewriter.config.base_model)
    if rewriter.config.base_model_hub_original:
        rewriter_ids.add(rewriter.config.base_model_hub_original)
    if not trained_ids or not rewriter_ids or trained_ids & rewriter_ids:
        return
    pair = (rewriter.config.base_model, trained)
    if pair in _WARNED_BACKBONES:
        return
    _WARNED_BACKBONES.add(pair)
    warnings.warn(
        f"The rewriter's base model ({rewriter.config.base_model}) is not the model being trained ({trained}). "
        "The targets are rewritten into the rewriter's words, not the trained model's: the paper's setting uses the "
        "same backbone (pi_0 is the starting point of the fine-tuned model). Training goes on as asked.",
        UserWarning,
        stacklevel=3,
    )


def _to_prompt_completion_row(row: dict[str, Any], spec: FormatSpec) -> dict[str, Any]:
    return to_prompt_completion(row, spec)


def _trainable_rows(result: PatchResult) -> Dataset:
    """The patched rows SFT can learn from: without those that have no question or no answer, with one warning each
    for dropped rows and for a set where no rewrite was accepted."""
    statistics = result.statistics
    dataset = result.dataset
    if statistics.dropped:
        warnings.warn(
            f"{statistics.dropped} of {statistics.rows} training rows have no question or no answer "
            f"({ {r: c for r, c in statistics.fallback_reasons.items() if r in NO_TARGET_REASONS} }): they are left out "
            "of SFT, which would otherwise train on an empty target. patch_statistics.dropped counts them.",
            UserWarning,
            stacklevel=3,
        )
        dataset = dataset.filter(
            lambda reason: reason not in NO_TARGET_REASONS, input_columns="patch_reason", desc="Dropping rows without a target"
        )
        if len(dataset) == 0:
            raise ValueError(
                f"No training row has both a question and an answer ({statistics.fallback_reasons}): there is nothing to "
                "train on. Check the data set's columns (patch_question_column / patch_answer_column)."
            )
    if statistics.rewritten == 0:
        warnings.warn(
            f"No rewrite was accepted for any of the {statistics.rows} training rows (fallback reasons: "
            f"{statistics.fallback_reasons}): every target is the expert answer, so this is plain SFT, not SFT on "
            "patched targets.",
            UserWarning,
            stacklevel=3,
        )
    return dataset


def _training_view(patched: Dataset, spec: FormatSpec, formatting_func: Callable | None) -> Dataset:
    """What SFTTrainer gets: no provenance columns; plain question/answer rows as conversational prompt-completion."""
    dataset = patched.remove_columns([c for c in (*PATCH_COLUMNS, REJECTED_COLUMN) if c in patched.column_names])
    if spec.format == DatasetFormat.PLAIN and formatting_func is None:
        dataset = _plain_to_prompt_completion(dataset, spec, "train")
    return dataset


def _plain_to_prompt_completion(dataset: Dataset, spec: FormatSpec, name: str) -> Dataset:
    return dataset.map(
        _to_prompt_completion_row,
        fn_kwargs={"spec": spec},
        remove_columns=[spec.question_column, spec.answer_column],
        desc=f"Converting the {name} dataset to prompt-completion",
    )


def _eval_view(
    eval_dataset: Any, question_column: str | None, answer_column: str | None, formatting_func: Callable | None
) -> Any:
    """Plain question/answer eval sets become prompt-completion rows, like the training set; never rewritten."""
    if eval_dataset is None or formatting_func is not None:
        return eval_dataset
    if isinstance(eval_dataset, Mapping):
        return {name: _eval_one(ds, question_column, answer_column, name) for name, ds in eval_dataset.items()}
    return _eval_one(eval_dataset, question_column, answer_column, "eval")


def _eval_one(dataset: Any, question_column: str | None, answer_column: str | None, name: str) -> Any:
    if not isinstance(dataset, Dataset):
        return dataset
    try:
        spec = detect_dataset_format(dataset, question_column=question_column, answer_column=answer_column)
    except ValueError:
        return dataset  # a format SFTTrainer reads by itself (e.g. "text"): leave it alone
    if spec.format != DatasetFormat.PLAIN:
        return dataset
    return _plain_to_prompt_completion(dataset, spec, name)


def _describe_rewriter(rewriter: Rewriter | None, given: Any, already_patched: bool) -> str:
    """One line for the model card: a link to the rewriter when it has a Hub id."""
    if already_patched and rewriter is None:
        return "the training set was patched before it reached the trainer"
    source = getattr(rewriter, "source", None) or (str(given) if isinstance(given, (str, os.PathLike)) else None)
    adapter = rewriter is not None and rewriter.config.has_adapter
    kind = "RL-trained rewriter (LoRA adapter)" if adapter else "prompted rewriter (no adapter)"
    if is_hub_repo_id(source):
        return f"{hub_link(source)}, a {kind}"
    if source:
        return f"`{Path(source).name}` (local folder), a {kind}"
    if given is None:
        return f"the {kind} on the model being trained (the prompted-rewrite baseline)"
    return f"a {kind} given as a `Rewriter` object"
