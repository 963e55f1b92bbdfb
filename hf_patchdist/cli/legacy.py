"""The flags `hf-patchdist sft` and `train-rewriter` had before they moved onto TRL's parser, translated.

Every flag of the former fixed-flag commands keeps working. Most are spelled as TRL's parser spells the field
anyway (it accepts `--max-steps` for `max_steps`); the others are rewritten here, before parsing, into the field
they set, with a `FutureWarning` naming the new spelling. YAML files (`--config`) take field names only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence


# old flag -> new flag; the value, when there is one, follows unchanged.
_RENAMED_COMMON = {
    "--dataset": "--dataset_name",
    "--split": "--dataset_train_split",
    "--model": "--model_name_or_path",
    "--output": "--output_dir",
}
RENAMED = {
    "sft": {
        **_RENAMED_COMMON,
        "--epochs": "--num_train_epochs",
        "--batch-size": "--per_device_train_batch_size",
        "--question-column": "--patch_question_column",
        "--answer-column": "--patch_answer_column",
        "--num-candidates": "--patch_num_candidates",
        "--rewrite-batch-size": "--patch_batch_size",
        "--max-new-tokens": "--rewriter_max_new_tokens",
    },
    "train-rewriter": dict(_RENAMED_COMMON),
}

# Old flags without a value, and what they become.
SWITCHES = {
    "sft": {"--no-bf16": ["--bf16", "false"], "--no-patch-cache": ["--patch_use_cache", "false"]},
    "train-rewriter": {},
}

# Old flags of each command that TRL's parser reads as they are (the field's own name or its hyphenated alias).
UNCHANGED = {
    "sft": [
        "--dataset-config", "--limit", "--rewriter", "--dtype", "--overwrite", "--max-steps", "--learning-rate",
        "--gradient-accumulation-steps", "--max-length", "--logging-steps", "--seed", "--lora-alpha", "--report-to",
        "--patch-cache-dir",
    ],
    "train-rewriter": [
        "--dataset-config", "--limit", "--question-column", "--answer-column", "--max-steps", "--num-train-epochs",
        "--prompts-per-step", "--num-generations", "--learning-rate", "--beta", "--temperature",
        "--max-completion-length", "--lambda-dist", "--lambda-div", "--lora-r", "--lora-alpha", "--judge-model",
        "--save-steps", "--seed", "--resume", "--overwrite",
    ],
}

_BOOL_WORDS = {"yes", "no", "true", "false", "t", "f", "y", "n", "1", "0"}


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"`{old}` is deprecated; use `{new}`.", FutureWarning, stacklevel=4)


def _split(token: str) -> tuple[str, str | None]:
    flag, sep, value = token.partition("=")
    return (flag, value) if sep else (token, None)


def translate_argv(command: str, argv: Sequence[str]) -> list[str]:
    """The arguments of `command` with the old flags rewritten into TRL field flags.

    Besides the renamed flags: `--config=FILE` becomes `--config FILE` (TrlParser only sees the separate form);
    `--push-to-hub REPO` becomes `--push_to_hub true --hub_model_id REPO` (a bare `--push-to-hub` or one with a
    boolean stays TRL's switch); and in `sft`, the old `--lora-r N` (hyphenated) keeps its meaning, a LoRA of rank
    N on all linear layers with alpha 2N (unless `--lora-alpha` or `--use_peft` are given), N = 0 being full
    fine-tuning. `--lora_r` is TRL's plain field, which needs `--use_peft`.
    """
    args = list(argv)
    renamed, switches = RENAMED[command], SWITCHES[command]
    present = {_split(token)[0] for token in args if token.startswith("--")}
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        flag, inline = _split(token) if token.startswith("--") else (token, None)

        def take_value() -> str:
            nonlocal i
            if inline is not None:
                return inline
            if i + 1 >= len(args):
                raise SystemExit(f"error: {flag} expects a value")
            i += 1
            return args[i]

        if token == "--":
            out.extend(args[i:])
            break
        if flag == "--config" and inline is not None:
            out += ["--config", inline]
        elif flag in renamed:
            new = renamed[flag]
            _deprecated(flag, new)
            out += [new, take_value()]
        elif flag in switches and inline is None:
            new = switches[flag]
            _deprecated(flag, " ".join(new))
            out += new
        elif flag == "--push-to-hub" and _is_repo_id(inline if inline is not None else _peek(args, i)):
            repo = take_value()
            _deprecated(f"--push-to-hub {repo}", f"--push_to_hub --hub_model_id {repo}")
            out += ["--push_to_hub", "true", "--hub_model_id", repo]
        elif command == "sft" and flag == "--lora-r":
            out += _old_lora_rank(take_value(), present)
        else:
            out.append(token)
        i += 1
    return out


def _peek(args: list[str], i: int) -> str | None:
    return args[i + 1] if i + 1 < len(args) else None


def _is_repo_id(value: str | None) -> bool:
    return value is not None and not value.startswith("-") and value.lower() not in _BOOL_WORDS


def _old_lora_rank(value: str, present: set[str]) -> list[str]:
    try:
        rank = int(value)
    except ValueError:
        raise SystemExit(f"error: --lora-r expects an integer, got {value!r}") from None
    if rank <= 0:
        _deprecated("--lora-r 0", "--use_peft false (the default)")
        return ["--use_peft", "false"]
    _deprecated(f"--lora-r {rank}", f"--use_peft --lora_r {rank} --lora_alpha {2 * rank}")
    out = ["--lora_r", str(rank)]
    if not present & {"--use_peft", "--use-peft", "--no_use_peft", "--no-use-peft"}:
        out += ["--use_peft", "true"]
    if not present & {"--lora_alpha", "--lora-alpha"}:
        out += ["--lora_alpha", str(2 * rank)]
    return out


def old_flags(command: str) -> list[str]:
    """Every flag the command had before it moved onto TRL's parser."""
    special = ["--lora-r"] if command == "sft" else ["--push-to-hub"]
    return [*RENAMED[command], *SWITCHES[command], *UNCHANGED[command], *special]


def old_flags_help(command: str) -> str:
    """The epilog of `--help`: the old flags that are spelled differently now."""
    lines = [f"  {old:<24} {new}" for old, new in RENAMED[command].items()]
    lines += [f"  {old:<24} {' '.join(new)}" for old, new in SWITCHES[command].items()]
    lines.append(f"  {'--push-to-hub REPO':<24} --push_to_hub --hub_model_id REPO")
    if command == "sft":
        lines.append(f"  {'--lora-r N':<24} --use_peft --lora_r N --lora_alpha 2N (N = 0: full fine-tuning)")
    return "Former flags, still accepted (with a FutureWarning):\n" + "\n".join(lines)
