"""The Rewriter: Generate-Verify-Fallback over any TRL data set format, usable with ``Dataset.map``.

Per example: build the rewriting prompt (question + expert answer + the instruction to re-derive
it in the model's own words), generate candidates, gate them with the task-consistency verifier,
keep the feasible candidate with the lowest NLL under pi_0 given QA(q), or fall back to the expert
answer. Provenance goes into four columns that the rest of the project reads (and, with
``keep_rejected``, a fifth, ``patch_rejected``: the rejected candidates with the gate's reason and detail):

* ``patch_source``: ``"rewrite"``, ``"copy"`` (the accepted candidate is the expert answer itself once GSM8K
  annotations are removed: feasible, but no rewrite) or ``"fallback"``;
* ``patch_reason``: empty for a rewrite, else why the gate (or the input) refused; ``too_long`` when a rewrite
  cannot fit in the model's context or its token limit (:mod:`hf_patchdist.rewriter.limits`);
* ``patch_nll_original``: pi_0 NLL of the expert answer (NaN for a row without a usable question or answer:
  never None, so that a ``map`` batch of such rows still writes a float column);
* ``patch_nll_kept``: pi_0 NLL of the answer that was kept.

Without an adapter the Rewriter is the prompted-rewrite baseline; with a trained LoRA adapter it is
the RL rewriter. Same class, same call.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..formats import FormatSpec, QAExample, detect_format, read_example, write_answer
from ..generation.base import GenerationBackend, GenerationSettings, accepts_token_limits
from ..generation.registry import LOADS_ITS_OWN_MODEL, backend_from_name, check_backend_name, default_backend
from ..generation.transformers_backend import TransformersBackend
from ..models import base_model_record, load_model_and_tokenizer, model_context_length
from ..scoring import QAScorer, qa_prompt_of
from ..verifiers import Verifier, check_verifier_trust, get_verifier
from .cache import PatchResult, patch_with_cache
from .candidates import JudgedCandidate, JudgedRow, select_target
from .fingerprint import rewriter_fingerprint
from .limits import TOO_LONG, plan_rows
from .config import (
    REJECTED_COLUMN,
    RewriterConfig,
    build_prompt_messages,
    candidate_generation_settings,
    check_adapter_folder,
    set_num_candidates,
    shown_reference,
)


logger = logging.getLogger(__name__)


class Rewriter:
    """Rewrite SFT targets into the model's own words with Generate-Verify-Fallback.

    A plain callable for ``datasets.Dataset.map`` (batched or not) over every TRL data set format.
    The model loads on first use, so constructing, pickling and hashing a Rewriter is cheap.

    Args:
        model: Base model: the embedded alias (default), a Hub id, a local folder, or a loaded
            ``PreTrainedModel`` (then pass ``tokenizer`` too).
        tokenizer: Tokenizer, when ``model`` is a loaded model.
        adapter: Folder of a LoRA adapter (the trained rewriter); None for the prompted baseline.
        config: A :class:`RewriterConfig`; the keyword arguments below override its fields.
        verifier: The gate: a :class:`~hf_patchdist.verifiers.Verifier`, a name (``"math"``,
            ``"choice"``, ``"exact"``, ``"regex"``), a dict, or a callable.
        num_candidates: Candidates per example (best-of-K; above 1 they are sampled with ``config.sampling``).
        require_lower_nll: Keep a rewrite only when it is closer to pi_0 than the expert answer
            (:attr:`RewriterConfig.require_lower_nll`).
        batch_size: Examples per generation/scoring batch inside one ``map`` batch.
        question_column: Plain column holding the question (GSM8K: ``"question"``).
        answer_column: Plain column holding the expert answer (GSM8K: ``"answer"``).
        backend: A :class:`~hf_patchdist.generation.GenerationBackend`, or the name of one (built on first use, see
            :func:`~hf_patchdist.generation.registry.backend_from_name`). None: OpenVINO on CPU where it can run
            the model, else transformers (:func:`~hf_patchdist.generation.registry.default_backend`).
        backend_options: Options of a backend given by name (CTranslate2: ``{"compute_type": "int8"}``).
        dtype: ``"auto"`` (bfloat16 where supported), ``"float32"``...
        device: Device for the model; default a GPU when visible.
        show_progress: Progress bars on long work.
        trust_remote_code: Allow code named by the config to run: a callable verifier given as
            ``"module:qualname"`` (in ``config.verifier`` or a ``verifier`` dict), and a base model that
            ships its own modelling code (passed to ``from_pretrained``). Without it such a verifier entry
            raises :class:`~hf_patchdist.verifiers.UntrustedVerifierError` before anything is imported. A
            function or :class:`~hf_patchdist.verifiers.Verifier` passed as ``verifier`` needs no opt-in.

    Example:
        ```python
        from datasets import load_dataset
        from hf_patchdist import Rewriter

        rewriter = Rewriter("smollm2-135m-instruct", question_column="question", answer_column="answer")
        gsm8k = load_dataset("openai/gsm8k", "main", split="train[:32]")
        patched = gsm8k.map(rewriter, batched=True, batch_size=16)
        patched["patch_source"][:4]
        ```
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        *,
        adapter: str | os.PathLike | None = None,
        config: RewriterConfig | None = None,
        verifier: Any = None,
        num_candidates: int | None = None,
        require_lower_nll: bool | None = None,
        batch_size: int = 16,
        question_column: str | None = None,
        answer_column: str | None = None,
        backend: GenerationBackend | str | None = None,
        backend_options: Mapping[str, Any] | None = None,
        dtype: Any = None,
        device: str | None = None,
        show_progress: bool = True,
        revision: str | None = None,
        token: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        config_given = config is not None
        config = RewriterConfig.from_dict(config.to_dict()) if config is not None else RewriterConfig()
        if model is None or isinstance(model, (str, os.PathLike)):
            self._model_source: str | None = str(model or config.base_model)
            self._model = None
            self._tokenizer = None
            if model is not None or config.base_model_gguf_sha256 is None:
                config.__dict__.update(
                    {"base_model_gguf_sha256": None, "base_model_hub_original": None} | base_model_record(self._model_source)
                )
        else:
            if tokenizer is None:
                raise ValueError("Pass the tokenizer together with a loaded model: Rewriter(model, tokenizer).")
            self._model_source = None
            self._model = model
            self._tokenizer = tokenizer
            if not config_given:
                name = getattr(getattr(model, "config", None), "_name_or_path", "") or config.base_model
                config.base_model = str(name)
        self.trust_remote_code = bool(trust_remote_code)
        if verifier is not None:
            self._verifier = get_verifier(verifier, trust_remote_code=self.trust_remote_code)
            config.verifier = self._verifier.to_dict()
        else:
            self._verifier = get_verifier(config.verifier, trust_remote_code=self.trust_remote_code)
        if num_candidates is not None:
            set_num_candidates(config, num_candidates)
        if require_lower_nll is not None:
            config.require_lower_nll = bool(require_lower_nll)
        self.adapter_path = str(adapter) if adapter is not None else None
        config.has_adapter = self.adapter_path is not None or bool(getattr(self._model, "peft_config", None))
        self.config = config
        self.batch_size = batch_size
        self.question_column = question_column
        self.answer_column = answer_column
        self.backend_name = check_backend_name(backend) if isinstance(backend, str) else None
        self.backend_options = dict(backend_options or {})
        self._backend = None if isinstance(backend, str) else backend
        self._backend_given, self._auto_backend = self._backend is not None, None
        self._scorer: QAScorer | None = None
        self.dtype = dtype
        self.device = device
        self.show_progress = show_progress
        self.revision = revision
        self.token = token
        self._adapter_loaded = False

    # ------------------------------------------------------------------ loading
    @property
    def verifier(self) -> Verifier:
        return self._verifier

    @property
    def generation_settings(self) -> GenerationSettings:
        return candidate_generation_settings(self.config, self.batch_size)

    def _ensure_model(self) -> None:
        if self._model is None:
            self._model, self._tokenizer = load_model_and_tokenizer(
                self._model_source, dtype=self.dtype, device=self.device, revision=self.revision, token=self.token,
                trust_remote_code=self.trust_remote_code,
            )
        if self.adapter_path is not None and not self._adapter_loaded:
            if not getattr(self._model, "peft_config", None):
                from peft import PeftModel

                check_adapter_folder(self.adapter_path)
                self._model = PeftModel.from_pretrained(self._model, self.adapter_path, is_trainable=False)
                self._model.eval()
            self._adapter_loaded = True
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token

    def _place_for_rank(self, rank: int | None) -> None:
        """Worker ``rank`` of a ``num_proc`` map loads onto GPU ``rank % count`` when several are visible."""
        if rank is None or self._model is not None or self.device not in (None, "cuda"):
            return
        import torch

        count = torch.cuda.device_count()
        if count > 1:
            self.device = f"cuda:{rank % count}"

    @property
    def model(self) -> Any:
        """The model (the adapter, when there is one, is enabled for generation, disabled for scoring)."""
        self._ensure_model()
        return self._model

    @property
    def tokenizer(self) -> Any:
        self._ensure_model()
        return self._tokenizer

    @property
    def backend(self) -> GenerationBackend:
        if self._backend is None:  # by name; vLLM, CTranslate2 and OpenVINO load the weights from the model's name or folder
            name, options = self._backend_choice()
            model = self._model_source if name in LOADS_ITS_OWN_MODEL and self._model_source is not None else self.model
            self._backend = backend_from_name(name, model, self.tokenizer, adapter=self.adapter_path, show_progress=self.show_progress, **options)
        return self._backend

    def _backend_choice(self) -> tuple[str, dict[str, Any]]:
        """The name and options of the backend this Rewriter builds: the one named, else :func:`default_backend`'s."""
        if self.backend_name is None and self._auto_backend is None:
            self._auto_backend = default_backend(self._model_source, self.device, self.backend_options)
        return (self.backend_name, self.backend_options) if self.backend_name else self._auto_backend

    @property
    def scorer(self) -> QAScorer:
        if self._scorer is None:
            self._scorer = QAScorer(self.model, self.tokenizer, batch_size=self.batch_size)
        return self._scorer

    def __getstate__(self) -> dict[str, Any]:
        # datasets hashes the mapped function (and pickles it for num_proc): keep only what
        # rebuilds the rewriter, never the loaded model, when the model came from a name.
        state = dict(self.__dict__)
        if self._model_source is not None:
            state.update(_model=None, _tokenizer=None, _scorer=None, _adapter_loaded=False)
            if isinstance(self._backend, TransformersBackend) or not self._backend_given:
                state["_backend"] = None  # rebuilt from its name (a CTranslate2, OpenVINO or vLLM engine does not pickle)
        return state

    def with_options(
        self,
        *,
        num_candidates: int | None = None,
        require_lower_nll: bool | None = None,
        batch_size: int | None = None,
        question_column: str | None = None,
        answer_column: str | None = None,
    ) -> Rewriter:
        """A shallow copy with other data/generation/selection options, or ``self`` when nothing changes.

        The copy shares the loaded model and backend (no reload); ``self`` is not modified.
        """
        changes = {
            "num_candidates": num_candidates not in (None, self.config.num_candidates),
            "require_lower_nll": require_lower_nll is not None and bool(require_lower_nll) != self.config.require_lower_nll,
            "batch_size": batch_size not in (None, self.batch_size),
            "question_column": question_column not in (None, self.question_column),
            "answer_column": answer_column not in (None, self.answer_column),
        }
        if not any(changes.values()):
            return self
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)  # not copy.copy: __getstate__ drops a model loaded by name
        if changes["num_candidates"] or changes["require_lower_nll"]:
            clone.config = RewriterConfig.from_dict(self.config.to_dict())
        if changes["num_candidates"]:
            set_num_candidates(clone.config, num_candidates)
        if changes["require_lower_nll"]:
            clone.config.require_lower_nll = bool(require_lower_nll)
        if changes["batch_size"]:
            clone.batch_size = batch_size
            clone._scorer = None  # built with the old batch size
        if changes["question_column"]:
            clone.question_column = question_column
        if changes["answer_column"]:
            clone.answer_column = answer_column
        return clone

    # ------------------------------------------------------------------ prompts
    def rewriting_instruction(self) -> str:
        """The fixed text of the prompt template (used to detect an instruction echoed back)."""
        return re.sub(r"\{[a-z_]+\}", " ", self.config.prompt_template)

    def build_prompt(self, example: QAExample) -> str:
        """The chat-rendered rewriting prompt for one example."""
        messages = build_prompt_messages(self.config, example)
        tokenizer = self.tokenizer
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def token_limits(self, examples: Sequence[QAExample], settings: GenerationSettings | None = None) -> list[int]:
        """Each example's new-token limit: ``settings.token_limit`` of its expert answer's length in tokens.

        The rule (``min(max_new_tokens, ceil(length_multiple * expert_tokens + length_margin))``) and
        how its constants were chosen are documented on
        :class:`~hf_patchdist.generation.GenerationSettings`.
        """
        settings = settings or self.generation_settings
        if settings.length_multiple is None:
            return [settings.max_new_tokens] * len(examples)
        shown = [shown_reference(self.config, example) for example in examples]
        counts = [len(ids) for ids in self.tokenizer(shown, add_special_tokens=False)["input_ids"]] if shown else []
        return [settings.token_limit(count) for count in counts]

    def qa_prompt(self, example: QAExample) -> str:
        """QA(q): the question as a plain user turn after the row's context turns, rendered for pi_0 (as in GRPO)."""
        return qa_prompt_of(self.tokenizer, example, self.config.qa_template)

    # ------------------------------------------------------------------ the map function
    def detect(self, columns: Sequence[str], sample: Mapping[str, Any] | None = None) -> FormatSpec:
        return detect_format(
            columns, question_column=self.question_column, answer_column=self.answer_column, sample=sample
        )

    def __call__(self, examples: Mapping[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Rewrite a batch (``map(batched=True)``) or a single example (``map()``).

        With ``map(..., with_rank=True)`` (which :meth:`rewrite` sets for ``num_proc``) the last
        positional argument is the worker's rank: worker k loads the model onto GPU ``k % count`` when
        several are visible and no device was chosen. An unbatched map needs ``with_indices=True``
        too, since a lone index could not be told from a rank.
        """
        spec = self.detect(list(examples.keys()))
        target = examples[spec.answer_column]
        batched = _is_batched(target, spec)
        if args and (batched or len(args) > 1) and (args[-1] is None or isinstance(args[-1], int)):
            self._place_for_rank(args[-1])
        if batched:
            rows = [{key: examples[key][i] for key in examples} for i in range(len(target))]
        else:
            rows = [dict(examples)]
        if rows and spec.answer_column == "completion":
            # Standard vs conversational prompt-completion is decided by a value, not the column names.
            spec = self.detect(list(examples.keys()), sample=rows[0])
        outputs = self.rewrite_rows(rows, spec)
        if not batched:
            return outputs[0]
        return {key: [out[key] for out in outputs] for key in outputs[0]} if outputs else {}

    def rewrite_rows(self, rows: Sequence[Mapping[str, Any]], spec: FormatSpec) -> list[dict[str, Any]]:
        """Generate-Verify-Fallback on rows; returns, per row, the new target column and provenance."""
        judged = self.judge_examples([read_example(row, spec) for row in rows])
        outputs = []
        for row, verdicts in zip(rows, judged):
            chosen = select_target(verdicts, require_lower_nll=self.config.require_lower_nll)
            out: dict[str, Any] = {spec.answer_column: row.get(spec.answer_column)}
            if chosen.text is not None:
                out.update(write_answer(row, spec, chosen.text))
            out.update(
                patch_source=chosen.source,
                patch_reason=chosen.reason,
                patch_nll_original=verdicts.original_nll,
                patch_nll_kept=chosen.nll,
                patch_num_feasible=chosen.num_feasible,
            )
            if self.config.keep_rejected:
                # Always a list of the same struct (an empty list for a row without rejections), so that map
                # writes one column type across batches.
                out[REJECTED_COLUMN] = [
                    {"text": c.text, "reason": c.reason, "detail": c.detail} for c in verdicts.candidates if not c.passed
                ]
            outputs.append(out)
        return outputs

    def judge_examples(self, examples: Sequence[QAExample]) -> list[JudgedRow]:
        """Generate ``num_candidates`` candidates per example, gate them, and score the feasible ones under pi_0.

        Returns every candidate with its verdict (:class:`~hf_patchdist.rewriter.candidates.JudgedRow`);
        :func:`~hf_patchdist.rewriter.candidates.select_target` picks the target, for all K candidates or, for
        best-of-k with k < K, the first k.
        """
        judged = [JudgedRow(reference=example.answer) for example in examples]
        for row, example in zip(judged, examples):
            row.reason = example.error or self.verifier.check_reference(example.answer)
        todo = [i for i, row in enumerate(judged) if row.reason is None]
        if todo:
            prompts = [self.build_prompt(examples[i]) for i in todo]
            settings = self.generation_settings
            # Rows whose rewrite cannot fit in the model's context are "too_long" and not generated; the
            # others get a token limit that stays inside it (see hf_patchdist.rewriter.limits).
            shown = [shown_reference(self.config, examples[i]) for i in todo]
            plan = plan_rows(self.tokenizer, prompts, shown, settings, model_context_length(self.model), accepts_token_limits(self.backend))
            for i, limit, expert_tokens, long in zip(todo, plan.limits, plan.expert_tokens, plan.too_long):
                judged[i].limit, judged[i].expert_tokens = limit, expert_tokens
                if long:
                    judged[i].reason = TOO_LONG
            prompts, todo = [p for p, long in zip(prompts, plan.too_long) if not long], [i for i, long in zip(todo, plan.too_long) if not long]
        if todo:
            generated = self.backend.generate(
                prompts, num_candidates=self.config.num_candidates, settings=settings, stop=self.verifier.final_answer_end, **plan.backend_limits()
            )
            instruction = self.rewriting_instruction()
            for i, candidates in zip(todo, generated):
                example = examples[i]
                for c in candidates:
                    result = self.verifier(c.text, example.answer, question=example.question, truncated=c.truncated, instruction=instruction)
                    judged[i].candidates.append(
                        JudgedCandidate(c.text, True, kept_text=result.text)
                        if result.passed
                        else JudgedCandidate(c.text, False, reason=result.reason, detail=result.detail)
                    )

        # One batched pi_0 pass scores the expert answers and every feasible candidate.
        score_prompts: list[str] = []
        targets: list[tuple[JudgedRow | JudgedCandidate, str]] = []
        for row, example in zip(judged, examples):
            if example.answer is None or example.question is None:
                continue
            qa = self.qa_prompt(example)
            for target, text in [(row, example.answer)] + [(c, c.kept_text) for c in row.candidates if c.passed]:
                score_prompts.append(qa)
                targets.append((target, text))
        if score_prompts:
            scores = self.scorer.score(score_prompts, [text for _, text in targets])
            for (target, _), nll in zip(targets, scores.nll):
                if isinstance(target, JudgedRow):
                    target.original_nll = nll
                else:
                    target.nll = nll
        return judged

    def output_features(self, dataset: Any) -> Any:
        """The ``datasets.Features`` of ``dataset`` patched by this rewriter: its own, plus the provenance columns.

        Pass them to ``dataset.map(rewriter, features=...)`` with ``keep_rejected``: a map batch in which no
        candidate was rejected holds only empty lists, whose type datasets cannot infer, and a later batch
        would then fail to write. :meth:`rewrite` and :meth:`patch_dataset` pass them.
        """
        from datasets import Features, List, Value

        columns = {**dataset.features, "patch_source": Value("string"), "patch_reason": Value("string")}
        columns.update(patch_nll_original=Value("float64"), patch_nll_kept=Value("float64"), patch_num_feasible=Value("int64"))
        if self.config.keep_rejected:
            columns[REJECTED_COLUMN] = List({"text": Value("string"), "reason": Value("string"), "detail": Value("string")})
        return Features(columns)

    def rewrite(self, dataset: Any, **map_kwargs: Any) -> Any:
        """``dataset.map(self, batched=True)`` with this rewriter's batch size, a progress description and, with
        ``keep_rejected``, the output column types (:meth:`output_features`)."""
        if self.config.keep_rejected and getattr(dataset, "features", None) is not None:
            map_kwargs.setdefault("features", self.output_features(dataset))
        map_kwargs.setdefault("batched", True)
        map_kwargs.setdefault("batch_size", max(self.batch_size, 1))
        map_kwargs.setdefault("desc", "Rewriting")
        if (map_kwargs.get("num_proc") or 1) > 1:
            map_kwargs.setdefault("with_rank", True)  # worker k on GPU k (see __call__)
        return dataset.map(self, **map_kwargs)

    def patch_dataset(
        self,
        dataset: Any,
        *,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        desc: str = "Patching the training set",
        distributed: bool = False,
    ) -> PatchResult:
        """Patch a whole data set once: the patched set with its statistics, from the on-disk cache when possible.

        The cache key holds the data set's fingerprint, :meth:`fingerprint` and the patch options, so a
        second call with the same data and rewriter reads the stored set instead of generating.

        Args:
            dataset: A ``datasets.Dataset`` in a format this rewriter reads.
            cache_dir: Cache folder (default ``<datasets cache>/hf_patchdist``).
            use_cache: Read and write the cache; False always generates and stores nothing.
            desc: Progress bar description.
            distributed: Under ``accelerate launch``/torchrun, split the rows over the processes and give
                every process the whole patched set (:mod:`~hf_patchdist.rewriter.sharding`); every process
                must then make this call. One process: no difference.

        Returns:
            A :class:`~hf_patchdist.rewriter.cache.PatchResult` (``dataset``, ``statistics``, ``from_cache``...).

        Example:
            ```python
            result = Rewriter(question_column="question", answer_column="answer").patch_dataset(gsm8k)
            print(result.statistics.summary())
            ```
        """
        if distributed:
            from .sharding import patch_sharded

            return patch_sharded(dataset, self, cache_dir=cache_dir, use_cache=use_cache, desc=desc)
        return patch_with_cache(dataset, self, cache_dir=cache_dir, use_cache=use_cache, desc=desc)

    # ------------------------------------------------------------------ identity, save and load
    def fingerprint(self) -> str:
        """A stable hash of everything that decides the rewrites: config, weights, columns.

        The weights enter as the adapter file's sha256 for an adapter folder, and for a model passed in
        already loaded as a sha256 over all its parameters and buffers (names, dtypes, shapes, bytes),
        computed on each call: a model changed in memory, or cast to another dtype, gets another fingerprint.
        A model named by alias, id or folder is identified by that name (loading it changes nothing).
        """
        return rewriter_fingerprint(self)

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``rewriter_config.json``, the LoRA adapter (when there is one) and a model card into ``folder``."""
        from ..hub.cards import save_rewriter_folder

        return save_rewriter_folder(folder, self.config, self.model if self.config.has_adapter else None)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
        revision: str | None = None,
    ) -> str:
        """Upload the adapter, ``rewriter_config.json`` and a model card to the Hub in one commit.

        Returns:
            The URL of the commit.
        """
        from ..hub.upload import push_rewriter

        return push_rewriter(self, repo_id, private=private, token=token, commit_message=commit_message, revision=revision)

    @classmethod
    def from_pretrained(
        cls,
        rewriter_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | None = None,
        model: Any = None,
        tokenizer: Any = None,
        trust_remote_code: bool = False,
        **kwargs: Any,
    ) -> Rewriter:
        """Load a rewriter from a local folder or a Hub repository id.

        Nothing in the folder runs unless ``trust_remote_code=True``: a callable verifier in its
        ``rewriter_config.json`` (``{"name": "callable", "callable": "module:qualname"}``) is refused with
        :class:`~hf_patchdist.verifiers.UntrustedVerifierError` before its module is imported.

        Args:
            rewriter_name_or_path: Folder or Hub repo id holding ``rewriter_config.json`` (+ adapter).
            revision: Hub revision (branch, tag or commit).
            token: Hub token.
            model: Use this base model (an alias, id or loaded model) instead of the config's.
            tokenizer: Tokenizer, when ``model`` is a loaded model.
            trust_remote_code: Build a callable verifier named in the config (importing its module) and let
                the base model run its own modelling code. Only for rewriters whose source you trust.
            **kwargs: Passed to :class:`Rewriter` (``num_candidates``, ``question_column``...).
        """
        from ..hub.download import check_base_model, download_rewriter

        folder = download_rewriter(rewriter_name_or_path, revision=revision, token=token)
        kwargs.setdefault("token", token)  # a private base model needs the same token
        config = RewriterConfig.from_folder(folder)
        # Before anything else: the entry is only read here, nothing has been imported.
        check_verifier_trust(
            config.verifier, trust_remote_code=trust_remote_code, source=f"the rewriter_config.json of {rewriter_name_or_path}"
        )
        if model is None:  # fail now, naming the base model, rather than at the first map batch
            check_base_model(config.base_model, token=token, rewriter=str(rewriter_name_or_path))
        adapter = str(folder) if config.has_adapter else None
        if adapter is not None:
            check_adapter_folder(adapter)
        rewriter = cls(model if model is not None else config.base_model, tokenizer, adapter=adapter, config=config, trust_remote_code=trust_remote_code, **kwargs)
        rewriter.source = str(rewriter_name_or_path)
        return rewriter


def _is_batched(target: Any, spec: FormatSpec) -> bool:
    if not isinstance(target, list):
        return False
    if spec.format.value in ("messages", "conversational_prompt_completion") or (
        spec.format.value == "prompt_completion" and target and isinstance(target[0], (list, dict))
    ):
        # unbatched: a list of message dicts; batched: a list of such lists
        return not target or not isinstance(target[0], Mapping)
    return True
