"""What a rewriter is, as data: :class:`RewriterConfig` (``rewriter_config.json``) and the constants around it.

This module imports nothing from the Hub code, the generation backends or the model loaders, so the
Hub helpers and cards can depend on it without depending on :class:`~hf_patchdist.rewriter.Rewriter`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..formats import QAExample
from ..generation.base import GenerationSettings
from ..models import DEFAULT_MODEL
from ..verifiers.text_checks import strip_calculator_annotations


logger = logging.getLogger(__name__)

PAPER_ID = "2602.11220"
PAPER_URL = f"https://arxiv.org/abs/{PAPER_ID}"
PAPER_TITLE = "Patch the Distribution Mismatch: RL Rewriting Agent for Stable Off-Policy SFT"

REWRITER_CONFIG_NAME = "rewriter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
REWRITER_FORMAT_VERSION = 1

# Weights stored as pickles (torch.save, pickle): refused wherever they are found, since unpickling can run code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")

PATCH_COLUMNS = ("patch_source", "patch_reason", "patch_nll_original", "patch_nll_kept", "patch_num_feasible")
REJECTED_COLUMN = "patch_rejected"
"""Column of a row's rejected candidates when :attr:`RewriterConfig.keep_rejected` is set: a list of
``{"text": str, "reason": str, "detail": str}``, empty when no candidate was rejected."""

DEFAULT_PROMPT_TEMPLATE = (
    "Question:\n{question}\n\n"
    "Reference solution:\n{answer}\n\n"
    "Solve the question step by step in your own words, using the reference solution as a guide. "
    "Write every calculation as an equation. "
    "End with the final answer on its own line, exactly in this form: {final_line}"
)



@dataclass
class RewriterConfig:
    """What ``rewriter_config.json`` holds: everything needed to rebuild a rewriter.

    Attributes:
        base_model: The base model as given (embedded alias, Hub id or path).
        base_model_gguf_sha256: For the embedded alias, the sha256 of its GGUF file.
        base_model_hub_original: For the embedded alias, the Hub id of the original model.
        prompt_template: Rewriting prompt with ``{question}``, ``{answer}`` and ``{final_line}``
            (the expert answer's last line, which fixes the final answer's form).
        system_prompt: Optional system turn before the rewriting prompt.
        qa_template: None renders QA(q) through the model's chat template; a string such as
            ``"Problem:\\n{question}\\n\\nAnswer:\\n"`` reproduces the authors' plain prefix.
        strip_annotations: Remove GSM8K ``<<a*b=c>>`` calculator annotations from the reference
            shown in the prompt.
        verifier: The task-consistency gate as ``Verifier.to_dict()``.
        num_candidates: Candidates generated per example (best-of-K: the feasible one with the lowest pi_0
            NLL is kept). With K above 1 the settings in ``sampling`` apply.
        generation: Generation settings (``GenerationSettings`` as a dict).
        sampling: Settings that replace those of ``generation`` when ``num_candidates`` is above 1 (several
            greedy candidates would be identical). Default temperature 0.6 and top_p 0.95: on GSM8K
            ``train[800:816]`` with the embedded 135M model, 8 candidates at temperature 1.0 / top_p 1.0 gave
            1 accepted row of 16 (10 without a final answer, 4 running past the token limit), 4 candidates
            at 0.6 / 0.95 gave 5 (``benchmarks/best_of_k.py`` measures K = 1 to 16 at these settings).
        require_lower_nll: Keep a rewrite only when its pi_0 NLL is below the expert answer's; otherwise the
            row keeps the expert answer with reason ``higher_nll_than_expert``. A rewrite further from pi_0
            than the answer it replaces works against the point of patching; off by default, which is the
            paper's rule (the lowest-NLL feasible candidate replaces the answer whatever its NLL), and on in
            the demo and the benchmarks' recommended settings (``--require-lower-nll`` on the command line).
        lambda_dist: Weight of the distributional-alignment reward (Stage I).
        lambda_div: Weight of the diversity reward (Stage I).
        keep_rejected: Add the column ``patch_rejected`` (:data:`REJECTED_COLUMN`): each row's
            candidates that the gate rejected, with its reason and detail, to audit the gate on your
            data (``--save-rejected`` on the command line).
        has_adapter: Whether the folder holds a LoRA adapter.
        training_summary: Statistics of the GRPO run that trained the adapter, if any.
        format_version: Version of this schema.
    """

    base_model: str = DEFAULT_MODEL
    base_model_gguf_sha256: str | None = None
    base_model_hub_original: str | None = None
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    system_prompt: str | None = None
    qa_template: str | None = None
    strip_annotations: bool = True
    verifier: dict[str, Any] = field(default_factory=lambda: {"name": "math"})
    num_candidates: int = 1
    generation: dict[str, Any] = field(default_factory=lambda: GenerationSettings().to_dict())
    sampling: dict[str, Any] = field(default_factory=lambda: {"do_sample": True, "temperature": 0.6, "top_p": 0.95})
    require_lower_nll: bool = False
    lambda_dist: float = 0.35
    lambda_div: float = 0.5
    keep_rejected: bool = False
    has_adapter: bool = False
    training_summary: dict[str, Any] = field(default_factory=dict)
    format_version: int = REWRITER_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / REWRITER_CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json_string())
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewriterConfig:
        version = int(data.get("format_version", REWRITER_FORMAT_VERSION))
        if version > REWRITER_FORMAT_VERSION:
            raise ValueError(
                f"{REWRITER_CONFIG_NAME} has format_version {version}; this hf-patchdist reads up to "
                f"{REWRITER_FORMAT_VERSION}. Upgrade hf-patchdist."
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning("Ignoring unknown keys in %s: %s", REWRITER_CONFIG_NAME, unknown)
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> RewriterConfig:
        path = Path(folder) / REWRITER_CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder} is not a rewriter: it has no {REWRITER_CONFIG_NAME}. A rewriter folder holds "
                f"{REWRITER_CONFIG_NAME} and, for a trained rewriter, a LoRA adapter ({ADAPTER_WEIGHTS_NAME})."
            )
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"{path} is not a valid {REWRITER_CONFIG_NAME}: {error}") from error


def final_answer_line(answer: str) -> str:
    """The expert answer's last non-empty line (``#### 72`` for GSM8K), which fixes the final form."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def set_num_candidates(config: RewriterConfig, num_candidates: int) -> None:
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be at least 1, got {num_candidates}")
    config.num_candidates = num_candidates


def candidate_generation_settings(config: RewriterConfig, batch_size: int) -> GenerationSettings:
    """The settings candidates are generated with: ``generation``, with ``sampling`` over it for K above 1."""
    settings = {**config.generation, **(config.sampling if config.num_candidates > 1 else {}), "batch_size": batch_size}
    if config.num_candidates > 1 and not settings.get("do_sample", False):
        raise ValueError(
            f"num_candidates={config.num_candidates} with do_sample=False in RewriterConfig.sampling would give "
            f"{config.num_candidates} identical greedy candidates: set sampling['do_sample'] to True."
        )
    return GenerationSettings(**settings)


def shown_reference(config: RewriterConfig, example: QAExample) -> str:
    """The expert answer as the rewriting prompt shows it (annotations stripped when configured)."""
    answer = example.answer or ""
    return (strip_calculator_annotations(answer) if config.strip_annotations else answer).strip()


def build_prompt_messages(config: RewriterConfig, example: QAExample) -> list[dict[str, Any]]:
    """The rewriting prompt as chat messages: optional system turn, the example's context, the request."""
    shown = shown_reference(config, example)
    text = config.prompt_template.format(
        question=example.question or "", answer=shown, final_line=final_answer_line(shown)
    )
    messages = [dict(m) for m in example.context]
    if config.system_prompt:
        messages = [{"role": "system", "content": config.system_prompt}, *messages]
    messages.append({"role": "user", "content": text})
    return messages


def check_adapter_folder(folder: str | os.PathLike) -> None:
    """Refuse an adapter that is not stored as safetensors (pickles can run code when loaded)."""
    folder = Path(folder)
    if (folder / ADAPTER_WEIGHTS_NAME).is_file():
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file()) if folder.is_dir() else []
    if pickled:
        raise ValueError(
            f"The adapter in {folder} is stored as a pickle ({', '.join(pickled)}); hf-patchdist loads "
            f"safetensors only, because unpickling can run arbitrary code. Convert it to {ADAPTER_WEIGHTS_NAME}."
        )
    raise FileNotFoundError(f"{folder} has no adapter weights ({ADAPTER_WEIGHTS_NAME}).")


