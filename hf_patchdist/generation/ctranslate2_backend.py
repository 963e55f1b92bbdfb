"""Generation with CTranslate2 on CPU (``pip install hf-patchdist[ctranslate2]``), from a converted or a transformers model.

What the backend does for the Rewriter that a bare ``Generator.generate_batch`` call would not:

* a transformers model (alias, folder or Hub id), optionally with a PEFT LoRA adapter, is converted
  once into a cache folder keyed by the sha256 of its weights and of the adapter's: CTranslate2 has
  no runtime LoRA, so the adapter is merged into the weights first (peft's ``merge_and_unload``);
* prompts arrive chat-rendered (the template already wrote the BOS token): they are tokenised with the
  transformers tokenizer, ``add_special_tokens=False``, and passed as tokens;
* every candidate is its own batch entry, stopped by a per-token callback at its own token limit or
  when its final-answer line is complete (the verifier's ``final_answer_end``, a pattern that
  CTranslate2's literal end tokens cannot express);
* :meth:`CTranslate2Backend.fingerprint` holds the weights' and adapter's hashes and the compute type,
  so two of them never share a patch-cache entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..import_utils import is_ctranslate2_available
from .base import GeneratedText, GenerationSettings, StopFunction, resolve_token_limits
from .converted_models import TokenIdBackend, end_of_sequence_ids, publish_folder, save_merged_model, source_sha256
from .vllm_backend import adapter_sha256


logger = logging.getLogger(__name__)

CONVERTED_MODEL_FILE = "model.bin"  # what a CTranslate2 model folder holds


def is_converted_model(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a model converted to CTranslate2 (its ``model.bin``)."""
    return (Path(folder) / CONVERTED_MODEL_FILE).is_file()


def default_conversion_cache() -> Path:
    """Where converted models are kept: ``<hf_patchdist cache>/ctranslate2``."""
    from ..models import patchdist_cache_dir

    return patchdist_cache_dir() / "ctranslate2"


def convert_transformers_model(
    model: str, output: str | os.PathLike, *, adapter: str | None = None, trust_remote_code: bool = False
) -> Path:
    """Convert a transformers model (with ``adapter`` merged into its weights) to CTranslate2 in ``output``.

    The weights keep their dtype (the compute type is chosen when the model is loaded); the tokenizer and
    ``generation_config.json`` are saved next to them. The folder appears whole or not at all (written aside, then renamed).
    """
    import ctranslate2

    output = Path(output)
    staging = output.with_name(f"{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    source = model
    merged: Path | None = None
    try:
        if adapter is not None:
            merged = output.with_name(f"{output.name}.merged-{os.getpid()}")
            save_merged_model(model, adapter, merged, trust_remote_code=trust_remote_code)
            source = str(merged)
        converter = ctranslate2.converters.TransformersConverter(
            source, low_cpu_mem_usage=True, trust_remote_code=trust_remote_code
        )
        converter.convert(str(staging), force=True)
        from ..models import load_tokenizer

        load_tokenizer(source).save_pretrained(staging)
        if (Path(source) / "generation_config.json").is_file():  # its end-of-sequence ids (read by the backend)
            shutil.copy(Path(source) / "generation_config.json", staging / "generation_config.json")
        publish_folder(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if merged is not None:
            shutil.rmtree(merged, ignore_errors=True)
    return output


class CTranslate2Backend(TokenIdBackend):
    """Generate with CTranslate2 (``pip install hf-patchdist[ctranslate2]``), optionally with a merged LoRA adapter.

    Args:
        model: A folder converted to CTranslate2 (holding ``model.bin``), or a transformers model (the
            embedded alias, a folder or a Hub id), converted on first use into ``cache_dir``.
        tokenizer: The transformers tokenizer; default: loaded from the converted folder (the conversion
            saves it there; a folder converted elsewhere needs its tokenizer files, or this argument).
        adapter: Folder of a PEFT LoRA adapter, merged into the weights before conversion (a
            transformers ``model`` only).
        compute_type: CTranslate2's compute type: ``"default"`` (the weights' own), ``"float32"``,
            ``"int8"``, ``"int8_float32"``, ``"bfloat16"``...
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        cache_dir: Folder of converted models, one sub-folder per hash of the model's weights (of its name,
            for a Hub id) + the adapter's + the CTranslate2 version; default ``<hf_patchdist cache>/ctranslate2``.
        intra_threads: Threads per generation (0: CTranslate2's default).
        seed: Seed of the sampling, set when the engine starts (CTranslate2 seeds each worker thread once, when
            the thread is created: re-seeding later has no effect), so two backends with the same seed sample the
            same candidates call after call; ``torch.manual_seed`` does not reach it. None: CTranslate2's own.
        trust_remote_code: Allow a model with its own modelling code to be converted.

    Example:
        ```python
        backend = CTranslate2Backend("smollm2-135m-instruct", adapter="my-rewriter", compute_type="int8")
        rewriter = Rewriter("smollm2-135m-instruct", adapter="my-rewriter", backend=backend)
        ```
    """

    def __init__(
        self,
        model: str | os.PathLike,
        tokenizer: Any = None,
        *,
        adapter: str | os.PathLike | None = None,
        compute_type: str = "default",
        device: str = "cpu",
        cache_dir: str | os.PathLike | None = None,
        intra_threads: int = 0,
        seed: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if not is_ctranslate2_available():
            raise ImportError("CTranslate2Backend needs CTranslate2: pip install 'hf-patchdist[ctranslate2]'")
        import ctranslate2

        self.adapter = str(adapter) if adapter is not None else None
        self.adapter_sha256 = adapter_sha256(self.adapter) if self.adapter is not None else None
        self.compute_type = compute_type
        self.seed = seed
        self.converted = False  # whether this construction converted the model (else it was in the cache)
        if is_converted_model(model):
            if self.adapter is not None:
                raise ValueError(
                    f"{model} is already converted to CTranslate2: an adapter can only be merged into a transformers "
                    "model (pass the base model's folder or name instead)."
                )
            self.model_path = Path(model)
            with open(self.model_path / CONVERTED_MODEL_FILE, "rb") as handle:
                self.weights_sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        else:
            self.model_path, self.weights_sha256 = self._converted(str(model), cache_dir, trust_remote_code)
        if tokenizer is None:
            from ..models import load_tokenizer

            tokenizer = load_tokenizer(str(self.model_path))
        self.tokenizer = tokenizer
        if seed is not None:
            ctranslate2.set_random_seed(seed)
        self.generator = ctranslate2.Generator(
            str(self.model_path), device=device, compute_type=compute_type, inter_threads=1, intra_threads=intra_threads
        )
        self.last_token_ids: list[list[list[int]]] = []  # per prompt, per candidate: the new tokens of the last call
        self._piece_has_newline: dict[int, bool] = {}

    def _converted(self, model: str, cache_dir: str | os.PathLike | None, trust_remote_code: bool) -> tuple[Path, str]:
        """The cache folder of ``model`` (+ adapter) converted, converting it when absent; and the weights' hash."""
        import ctranslate2

        from ..models import resolve_model_path

        source = resolve_model_path(model)
        weights = source_sha256(source)
        key = hashlib.sha256(
            json.dumps([weights, self.adapter_sha256, ctranslate2.__version__]).encode()
        ).hexdigest()[:16]
        folder = Path(cache_dir) if cache_dir is not None else default_conversion_cache()
        target = folder / key
        if not is_converted_model(target):
            self.converted = True
            logger.info("Converting %s%s to CTranslate2 into %s", model, f" + {self.adapter}" if self.adapter else "", target)
            folder.mkdir(parents=True, exist_ok=True)
            convert_transformers_model(source, target, adapter=self.adapter, trust_remote_code=trust_remote_code)
        return target, weights

    def fingerprint(self) -> str:
        """What decides this backend's outputs: weights, adapter, compute type (for the patch cache)."""
        import ctranslate2

        record = {
            "backend": type(self).__qualname__,
            "weights_sha256": self.weights_sha256,
            "adapter_sha256": self.adapter_sha256,
            "compute_type": self.compute_type,
            "ctranslate2": ctranslate2.__version__,
        }
        return json.dumps(record, sort_keys=True)

    def _eos_ids(self) -> list[int]:
        return end_of_sequence_ids(self.model_path, self.tokenizer)

    def generate(
        self,
        prompts: Sequence[str],
        *,
        num_candidates: int,
        settings: GenerationSettings,
        stop: StopFunction | None = None,
        max_new_tokens: Sequence[int] | None = None,
    ) -> list[list[GeneratedText]]:
        """``num_candidates`` completions per chat-rendered prompt, each ended at its final-answer line.

        Args:
            prompts: Chat-rendered prompts.
            num_candidates: Completions per prompt (sampled when ``settings.do_sample``).
            settings: Sampling options, ``batch_size`` (prompts per batch) and ``max_new_tokens``.
            stop: The verifier's ``final_answer_end``: a candidate ends once its final-answer line is complete.
            max_new_tokens: Optional token limit of each prompt, instead of ``settings.max_new_tokens``. A
                candidate that hits it without an end-of-sequence token or a final-answer line is truncated.
        """

        if num_candidates < 1:
            raise ValueError(f"num_candidates must be at least 1, got {num_candidates}")
        limits = resolve_token_limits(len(prompts), settings, max_new_tokens)
        if not prompts:
            return []
        encoded = [list(ids) for ids in self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
        eos = self._eos_ids()
        if settings.do_sample:
            options = {
                "sampling_topk": int(settings.top_k),  # 0: every token, as in GenerationSettings
                "sampling_topp": float(settings.top_p),
                "sampling_temperature": float(settings.temperature),
            }
        else:
            options = {"sampling_topk": 1}
        results: list[list[GeneratedText]] = [[] for _ in prompts]
        self.last_token_ids = [[] for _ in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        size = max(int(settings.batch_size), 1)
        for start in range(0, len(order), size):
            rows = [i for i in order[start : start + size] for _ in range(num_candidates)]
            for index, tokens in zip(rows, self._generate_rows(rows, encoded, limits, eos, stop, options)):
                tokens = tokens[: limits[index]]
                results[index].append(self._result(tokens, set(eos), limits[index], stop))
                self.last_token_ids[index].append(tokens)
        return results

    def _generate_rows(
        self,
        rows: list[int],
        encoded: list[list[int]],
        limits: list[int],
        eos: list[int],
        stop: StopFunction | None,
        options: dict[str, Any],
    ) -> list[list[int]]:
        """New tokens of one batch entry per row (prompt index), each stopped at its limit or final-answer line."""
        tokens: list[list[int]] = [[] for _ in rows]
        eos_set = set(eos)

        def callback(step: Any) -> bool:
            row = tokens[step.batch_id]
            row.append(step.token_id)
            return len(row) >= limits[rows[step.batch_id]] or row[-1] in eos_set or self._line_complete(row, stop)

        self.generator.generate_batch(
            [self.tokenizer.convert_ids_to_tokens(encoded[i]) for i in rows],
            max_length=max(limits[i] for i in rows),
            include_prompt_in_result=False,
            end_token=eos,
            return_end_token=True,
            callback=callback,
            **options,
        )
        return tokens
