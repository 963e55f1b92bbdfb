"""Generation with OpenVINO GenAI on CPU (``pip install hf-patchdist[openvino]``), converted without optimum-intel.

What the backend does for the Rewriter that a bare ``ContinuousBatchingPipeline.generate`` call would not:

* a transformers model (alias, folder or Hub id), optionally with a PEFT LoRA adapter merged in (peft's
  ``merge_and_unload``), is converted once into ``<hf_patchdist cache>/openvino/<hash>/``: written as a
  GGUF file (:mod:`~hf_patchdist.generation.gguf_export`, F16 linear weights), read by GenAI's own GGUF
  reader, which saves the OpenVINO model it builds (``enable_save_ov_model``); the GGUF file is then
  deleted and the folder renamed into place (whole or not at all). optimum-intel is not needed: its 2.2
  release pins transformers < 5.6;
* prompts arrive chat-rendered: they are tokenised with the transformers tokenizer
  (``add_special_tokens=False``), fed as token ids, and the new tokens are decoded with it too;
* continuous batching with prefix caching: every prompt is one request with its own token limit; the
  K candidates of a sampled row are ``num_return_sequences`` of one request (one prefill); greedy
  candidates are generated once and repeated;
* a candidate ends at an end-of-sequence token or when its final-answer line is complete (the verifier's
  ``final_answer_end``, checked as tokens arrive; the request is stopped once all its candidates ended);
* :meth:`OpenVINOBackend.fingerprint` holds the weights' and adapter's hashes and the precisions, so two
  backends never share a patch-cache entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..import_utils import is_openvino_genai_available
from .base import GeneratedText, GenerationSettings, StopFunction, resolve_token_limits
from .converted_models import TokenIdBackend, end_of_sequence_ids, load_merged_model, publish_folder, source_sha256
from .gguf_export import GGUF_WEIGHT_TYPES, write_gguf
from .vllm_backend import adapter_sha256


logger = logging.getLogger(__name__)

OPENVINO_MODEL_FILE = "openvino_model.xml"  # what an OpenVINO model folder holds (with its .bin)
CONVERSION_RECORD_FILE = "hf_patchdist_conversion.json"  # what a folder converted here came from
MISSING_PACKAGE = "OpenVINOBackend needs OpenVINO GenAI: pip install 'hf-patchdist[openvino]'"


def is_openvino_model(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds an OpenVINO model (``openvino_model.xml``: ours, or one exported by optimum-cli)."""
    return (Path(folder) / OPENVINO_MODEL_FILE).is_file()


def default_openvino_cache() -> Path:
    """Where converted models are kept: ``<hf_patchdist cache>/openvino``."""
    from ..models import patchdist_cache_dir

    return patchdist_cache_dir() / "openvino"


def scheduler_config(cache_size_gb: int, max_num_batched_tokens: int, max_num_seqs: int) -> Any:
    """GenAI's continuous-batching scheduler with prefix caching on."""
    import openvino_genai

    config = openvino_genai.SchedulerConfig()
    config.enable_prefix_caching = True
    config.cache_size = int(cache_size_gb)
    config.max_num_batched_tokens = int(max_num_batched_tokens)
    config.max_num_seqs = int(max_num_seqs)
    return config


def convert_to_openvino(
    model: str,
    output: str | os.PathLike,
    *,
    adapter: str | None = None,
    weight_type: str = "f16",
    record: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> Path:
    """Convert a transformers model (with ``adapter`` merged) into an OpenVINO model folder ``output``.

    The model goes through a GGUF file that GenAI's reader turns into an OpenVINO model and saves; the
    transformers tokenizer, ``generation_config.json`` (its end-of-sequence ids) and ``record`` (what the
    folder came from, :data:`CONVERSION_RECORD_FILE`) are saved beside it. The folder appears whole or not at
    all (written aside, then renamed).
    """
    import openvino_genai

    output = Path(output)
    staging = output.with_name(f"{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        loaded, tokenizer = load_merged_model(model, adapter, trust_remote_code=trust_remote_code)
        gguf_file = staging / "model.gguf"
        write_gguf(loaded, tokenizer, gguf_file, weight_type=weight_type)
        loaded.generation_config.save_pretrained(staging)
        del loaded
        # Reading the GGUF file builds the OpenVINO model; enable_save_ov_model writes it beside the file.
        openvino_genai.ContinuousBatchingPipeline(
            str(gguf_file), scheduler_config(1, 256, 1), "CPU", {"enable_save_ov_model": True}
        )
        if not is_openvino_model(staging):
            raise RuntimeError(f"OpenVINO GenAI {openvino_genai.__version__} read {gguf_file} but saved no {OPENVINO_MODEL_FILE}")
        gguf_file.unlink()
        tokenizer.save_pretrained(staging)
        (staging / CONVERSION_RECORD_FILE).write_text(json.dumps({**(record or {}), "weight_format": weight_type}, sort_keys=True))
        publish_folder(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


class OpenVINOBackend(TokenIdBackend):
    """Generate with OpenVINO GenAI's continuous batching on CPU, optionally with a merged LoRA adapter.

    Args:
        model: A folder holding an OpenVINO model (``openvino_model.xml``: converted here or by
            ``optimum-cli export openvino``), or a transformers Llama-family model (the embedded alias, a folder
            or a Hub id), converted on first use into ``cache_dir``.
        tokenizer: The transformers tokenizer; default: loaded from the model folder (the conversion saves it there).
        adapter: Folder of a PEFT LoRA adapter, merged into the weights before conversion (a transformers ``model`` only).
        weight_format: Type of the converted linear weights: ``"f16"`` (computed in ``inference_precision``) or ``"q8_0"``.
        inference_precision: OpenVINO's ``INFERENCE_PRECISION_HINT``: ``"f32"`` (default: the greedy tokens of
            transformers float32 on the tests and on 8 of 8 GSM8K rewrite prompts of SmolLM2) or ``"bf16"``.
        kv_cache_precision: OpenVINO's ``KV_CACHE_PRECISION`` (``"f32"``, ``"f16"``, ``"u8"``...); None keeps the
            converted model's own (f16).
        cache_dir: Folder of converted models, one sub-folder per hash of the weights (of the name, for a Hub id) +
            the adapter's + the weight format + the GenAI version; default ``<hf_patchdist cache>/openvino``.
        threads: ``INFERENCE_NUM_THREADS`` (0: OpenVINO's default, every core).
        cache_size_gb: Gigabytes of KV cache of the scheduler.
        max_num_batched_tokens: Tokens per scheduler step (prompt chunks and decoded tokens together).
        max_num_seqs: Sequences decoded together at most.
        seed: Seed of the sampling: each request's ``rng_seed`` is drawn from a generator seeded with it, so two
            backends with the same seed sample the same candidates call after call. None: drawn from Python's global
            generator at each call, so ``transformers.set_seed`` (which seeds it) makes a run repeatable, as it does
            for the transformers backend.
        trust_remote_code: Allow a model with its own modelling code to be loaded for conversion.

    Example:
        ```python
        backend = OpenVINOBackend("smollm2-135m-instruct", adapter="my-rewriter")
        rewriter = Rewriter("smollm2-135m-instruct", adapter="my-rewriter", backend=backend)
        ```
    """

    def __init__(
        self,
        model: str | os.PathLike,
        tokenizer: Any = None,
        *,
        adapter: str | os.PathLike | None = None,
        weight_format: str = "f16",
        inference_precision: str = "f32",
        kv_cache_precision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        threads: int = 0,
        cache_size_gb: int = 2,
        max_num_batched_tokens: int = 4096,
        max_num_seqs: int = 256,
        seed: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if not is_openvino_genai_available():
            raise ImportError(MISSING_PACKAGE)
        import openvino_genai

        if weight_format not in GGUF_WEIGHT_TYPES:
            raise ValueError(f"weight_format must be one of {', '.join(GGUF_WEIGHT_TYPES)}, got {weight_format!r}")
        self.adapter = str(adapter) if adapter is not None else None
        self.adapter_sha256 = adapter_sha256(self.adapter) if self.adapter is not None else None
        self.weight_format = weight_format
        self.inference_precision = inference_precision
        self.kv_cache_precision = kv_cache_precision
        self.converted = False  # whether this construction converted the model (else it was in the cache)
        if is_openvino_model(model):
            if self.adapter is not None:
                raise ValueError(
                    f"{model} is already an OpenVINO model: an adapter can only be merged into a transformers model "
                    "(pass the base model's folder or name instead)."
                )
            self.model_path = Path(model)
            self.weights_sha256 = self._folder_identity()
        else:
            self.model_path, self.weights_sha256 = self._converted(str(model), cache_dir, trust_remote_code)
        if tokenizer is None:
            from ..models import load_tokenizer

            tokenizer = load_tokenizer(str(self.model_path))
        self.tokenizer = tokenizer
        properties: dict[str, Any] = {"INFERENCE_PRECISION_HINT": inference_precision}
        if kv_cache_precision is not None:
            properties["KV_CACHE_PRECISION"] = kv_cache_precision
        if threads:
            properties["INFERENCE_NUM_THREADS"] = int(threads)
        self.pipeline = openvino_genai.ContinuousBatchingPipeline(
            str(self.model_path), scheduler_config(cache_size_gb, max_num_batched_tokens, max_num_seqs), "CPU", properties
        )
        # The module itself when no seed is given: its global generator is the one transformers.set_seed seeds.
        self._random = random.Random(seed) if seed is not None else random
        self._next_request = 0
        self.last_token_ids: list[list[list[int]]] = []  # per prompt, per candidate: the new tokens of the last call
        self._piece_has_newline: dict[int, bool] = {}

    def _converted(self, model: str, cache_dir: str | os.PathLike | None, trust_remote_code: bool) -> tuple[Path, str]:
        """The cache folder of ``model`` (+ adapter) converted, converting it when absent; and the weights' hash."""
        import openvino_genai

        from ..models import resolve_model_path

        source = resolve_model_path(model)
        weights = source_sha256(source)
        key = hashlib.sha256(
            json.dumps([weights, self.adapter_sha256, self.weight_format, openvino_genai.__version__]).encode()
        ).hexdigest()[:16]
        folder = Path(cache_dir) if cache_dir is not None else default_openvino_cache()
        target = folder / key
        if not is_openvino_model(target):
            self.converted = True
            logger.info("Converting %s%s to OpenVINO into %s", model, f" + {self.adapter}" if self.adapter else "", target)
            folder.mkdir(parents=True, exist_ok=True)
            record = {"weights_sha256": weights, "adapter_sha256": self.adapter_sha256}
            convert_to_openvino(
                source, target, adapter=self.adapter, weight_type=self.weight_format, record=record, trust_remote_code=trust_remote_code
            )
        return target, weights

    def _folder_identity(self) -> str:
        """The weights' hash of an OpenVINO folder given directly: from its conversion record (the adapter's and
        weight format too), else the sha256 of its ``openvino_model.bin`` (a folder exported elsewhere)."""
        record_file = self.model_path / CONVERSION_RECORD_FILE
        if record_file.is_file():
            record = json.loads(record_file.read_text(encoding="utf-8"))
            self.adapter_sha256 = record.get("adapter_sha256")
            self.weight_format = record.get("weight_format", self.weight_format)
            return record["weights_sha256"]
        self.weight_format = "exported"
        with open(self.model_path / OPENVINO_MODEL_FILE.replace(".xml", ".bin"), "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    def fingerprint(self) -> str:
        """What decides this backend's outputs: weights, adapter, weight format and precisions (for the patch cache)."""
        import openvino_genai

        record = {
            "backend": type(self).__qualname__,
            "weights_sha256": self.weights_sha256,
            "adapter_sha256": self.adapter_sha256,
            "weight_format": self.weight_format,
            "inference_precision": self.inference_precision,
            "kv_cache_precision": self.kv_cache_precision,
            "openvino_genai": openvino_genai.__version__,
        }
        return json.dumps(record, sort_keys=True)

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
            settings: Sampling options and ``max_new_tokens``; ``batch_size`` is not used (the scheduler takes every
                prompt at once, within ``max_num_seqs`` and the KV cache).
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
        eos = set(end_of_sequence_ids(self.model_path, self.tokenizer))
        sequences = num_candidates if settings.do_sample else 1  # greedy candidates are all the same
        tokens = self._run(encoded, limits, sequences, settings, eos, stop)
        results: list[list[GeneratedText]] = []
        self.last_token_ids = []
        for row, limit in zip(tokens, limits):
            candidates = [self._cut(candidate, limit, eos, stop) for candidate in row]
            candidates = candidates * num_candidates if sequences == 1 else candidates
            self.last_token_ids.append(candidates)
            results.append([self._result(candidate, eos, limit, stop) for candidate in candidates])
        return results

    def _config(self, limit: int, sequences: int, settings: GenerationSettings, eos: set[int]) -> Any:
        import openvino_genai

        config = openvino_genai.GenerationConfig()
        config.max_new_tokens = int(limit)
        config.eos_token_id = min(eos)  # a folder converted here has no GenAI tokenizer to say it
        config.stop_token_ids = eos
        if settings.do_sample:
            config.do_sample = True
            config.num_return_sequences = int(sequences)
            config.temperature = float(settings.temperature)
            config.top_p = float(settings.top_p)
            if settings.top_k:
                config.top_k = int(settings.top_k)
            config.rng_seed = self._random.randrange(2**31)
        else:
            config.do_sample = False
        return config

    def _run(
        self,
        encoded: list[list[int]],
        limits: list[int],
        sequences: int,
        settings: GenerationSettings,
        eos: set[int],
        stop: StopFunction | None,
    ) -> list[list[list[int]]]:
        """New tokens of each sequence of each prompt; a request stops once all its sequences ended."""
        import numpy as np
        import openvino as ov

        handles = []
        for ids, limit in zip(encoded, limits):
            request = self._next_request
            self._next_request += 1
            config = self._config(limit, sequences, settings, eos)
            handles.append(self.pipeline.add_request(request, ov.Tensor(np.array([ids], dtype=np.int64)), config))
        tokens: list[dict[int, list[int]]] = [{} for _ in encoded]
        ended: list[set[int]] = [set() for _ in encoded]
        live = set(range(len(encoded)))
        while self.pipeline.has_non_finished_requests():
            self.pipeline.step()
            for index in list(live):
                handle = handles[index]
                if handle.can_read():
                    for sequence, output in handle.read().items():
                        row = tokens[index].setdefault(sequence, [])
                        if sequence in ended[index]:
                            continue
                        for token in output.generated_ids:
                            row.append(int(token))
                            if row[-1] in eos or self._line_complete(row, stop):
                                ended[index].add(sequence)
                                break
                if len(ended[index]) == sequences:
                    handle.stop()  # every candidate ended: the request leaves the batch
                    live.discard(index)
        return [[row[sequence] for sequence in sorted(row)] for row in tokens]

    def _cut(self, tokens: list[int], limit: int, eos: set[int], stop: StopFunction | None) -> list[int]:
        """``tokens`` up to the token that ended the candidate (tokens read after it in the same step are dropped)."""
        tokens = tokens[:limit]
        for position in range(len(tokens)):
            if tokens[position] in eos or self._line_complete(tokens[: position + 1], stop):
                return tokens[: position + 1]
        return tokens
