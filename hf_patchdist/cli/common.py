"""Helpers shared by the commands: output folders, the data options of `rewrite`, building a Rewriter."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from ..models import DEFAULT_MODEL


def _prepare_output(path: str, overwrite: bool) -> Path:
    output = Path(path)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        if not overwrite:
            raise SystemExit(f"error: {output} exists and is not empty; pass --overwrite to replace it.")
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    return output


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=None, help="Hub id, local JSONL/JSON/Parquet/CSV file or saved data set; default: the built-in arithmetic set")
    parser.add_argument("--dataset-config", default=None, help="Hub data set configuration name (e.g. 'main' for openai/gsm8k)")
    parser.add_argument("--split", default=None, help="Split, with slicing (e.g. 'train[800:832]'); default 'train'")
    parser.add_argument("--limit", type=int, default=None, help="Use only the first N rows")
    parser.add_argument("--question-column", default=None, help="Plain column with the question (default 'question' when present)")
    parser.add_argument("--answer-column", default=None, help="Plain column with the expert answer (default 'answer' when present)")


def _add_rewriter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rewriter", default=None, help="Trained rewriter: local folder or Hub id (default: prompted rewriting on --model)")
    parser.add_argument(
        "--num-candidates", type=int, default=None, help="Candidates per example (default 1, greedy; above 1 best-of-K, sampled)"
    )
    parser.add_argument(
        "--require-lower-nll",
        action="store_true",
        help="Keep a rewrite only when its pi_0 NLL is below the expert answer's (else the row keeps the expert answer)",
    )
    parser.add_argument("--rewrite-batch-size", type=int, default=16, help="Examples per generation batch")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="Token limit per rewrite")
    parser.add_argument(
        "--length-margin",
        type=int,
        default=None,
        help="Tokens added to 1.5x the expert answer's length for each row's token limit (default 32; more for terse "
        "expert answers, whose rewrites in words are several times longer)",
    )
    parser.add_argument("--dtype", default="auto", help="'auto' (bfloat16 where supported), 'float32', 'bfloat16'")
    parser.add_argument(
        "--backend",
        default=None,
        choices=("transformers", "vllm", "ctranslate2", "openvino"),
        help="Generation backend (default: openvino on CPU where installed and able to run the model, else transformers; vllm, ctranslate2 and openvino need their extra installed)",
    )
    parser.add_argument(
        "--compute-type", default=None, help="CTranslate2 compute type with --backend ctranslate2: 'default', 'int8', 'float32'..."
    )
    parser.add_argument(
        "--inference-precision",
        default=None,
        help="OpenVINO inference precision with --backend openvino: 'f32' (default) or 'bf16' (the default backend takes bf16 where the CPU computes it natively)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="Let the rewriter's config import the callable verifier it names (and the model run its own code); "
        "only for rewriters you trust",
    )


def make_rewriter(
    rewriter: str | None, model: str | None, *, max_new_tokens: int | None = None, length_margin: int | None = None, **options: Any
):
    """A Rewriter: the trained one in the folder or Hub repo `rewriter`, else prompted rewriting on `model`.

    `options` go to the Rewriter (``num_candidates``, ``batch_size``, ``question_column``, ``dtype``...);
    `max_new_tokens` replaces the token limit of its generation settings, `length_margin` the margin of each row's limit.
    """
    from ..rewriter import Rewriter

    if rewriter:
        built = Rewriter.from_pretrained(rewriter, **options)
    else:
        built = Rewriter(model or DEFAULT_MODEL, **options)
    if max_new_tokens is not None:
        built.config.generation = {**built.config.generation, "max_new_tokens": max_new_tokens}
    if length_margin is not None:
        built.config.generation = {**built.config.generation, "length_margin": length_margin}
    return built


def build_rewriter(args: argparse.Namespace, model: str | None = None):
    """A Rewriter from the options of `hf-patchdist rewrite`."""
    return make_rewriter(
        args.rewriter,
        model,
        max_new_tokens=args.max_new_tokens,
        length_margin=getattr(args, "length_margin", None),
        num_candidates=args.num_candidates,
        require_lower_nll=True if getattr(args, "require_lower_nll", False) else None,
        batch_size=args.rewrite_batch_size,
        question_column=args.question_column,
        answer_column=args.answer_column,
        dtype=args.dtype,
        trust_remote_code=getattr(args, "trust_remote_code", False),
        backend=args.backend,
        backend_options=_backend_options(args),
    )


def _backend_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The backend's own options given on the command line (CTranslate2's compute type, OpenVINO's precision)."""
    options = {
        "compute_type": getattr(args, "compute_type", None),
        "inference_precision": getattr(args, "inference_precision", None),
    }
    return {key: value for key, value in options.items() if value} or None


def load_script_dataset(script_args: Any):
    """The training set named by a training command's script arguments (a `PatchScriptArguments`)."""
    from ..data import load_any_dataset

    return load_any_dataset(
        script_args.dataset_name,
        split=script_args.dataset_train_split,
        config_name=script_args.dataset_config,
        limit=script_args.limit,
    )


def check_output_dir(output: Path, *, overwrite: bool, resume: bool, wipe: bool) -> None:
    """Refuse a non-empty output folder unless the run resumes from it or overwrites it (`wipe`: delete it then)."""
    if not output.exists() or (output.is_dir() and not any(output.iterdir())) or resume:
        return
    if not overwrite:
        raise SystemExit(
            f"error: {output} exists and is not empty; pass --resume to continue its last checkpoint or --overwrite "
            "to replace it."
        )
    if wipe:
        shutil.rmtree(output) if output.is_dir() else output.unlink()
