"""Model cards for rewriters and data set cards for patched data sets, built with ``huggingface_hub``.

The YAML metadata follows the Hub's conventions (``base_model``, ``library_name``, ``tags``, ``datasets``,
``license``) so that the Hub links a rewriter to its base model and lists it under the library. A patched data
set's card is merged into the README that ``datasets.push_to_hub`` writes: its ``configs``/``dataset_info``
stay, and an ``hf_patchdist`` key holds the patch statistics and the rewriter of every split, so that they can
be read back with ``DatasetCard.load(repo_id).data.hf_patchdist``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import DatasetCard, ModelCard, ModelCardData

from ..patch_statistics import PatchStatistics
from ..rewriter.config import PAPER_ID, PAPER_TITLE, PAPER_URL, PATCH_COLUMNS, RewriterConfig
from .ids import base_model_text, hub_base_model, hub_link, is_hub_repo_id

if TYPE_CHECKING:
    from ..rewriter import Rewriter


LIBRARY_NAME = "hf-patchdist"
REWRITER_TAGS = [LIBRARY_NAME, "rewriter", "distribution-patch", f"arxiv:{PAPER_ID}"]
DATASET_TAGS = [LIBRARY_NAME, "distribution-patch", "rewritten", f"arxiv:{PAPER_ID}"]
# Our part of a data set README, between markers, so that a second push replaces it instead of appending.
CARD_BEGIN = "<!-- hf-patchdist:begin -->"
CARD_END = "<!-- hf-patchdist:end -->"

PATCH_COLUMN_DESCRIPTIONS: dict[str, str] = {
    "patch_source": '`"rewrite"` when the target was replaced by an accepted rewrite, `"copy"` when the accepted '
    "candidate was the expert answer itself (GSM8K `<<...>>` annotations removed, nothing else changed), "
    '`"fallback"` when the expert answer was kept.',
    "patch_reason": "Empty for a rewrite; otherwise why the task-consistency gate (or the input) refused, e.g. "
    "`wrong_final_answer`, `wrong_equation`, `no_reasoning`, `truncated`, `missing_answer`.",
    "patch_nll_original": "Mean per-token negative log-likelihood of the expert answer under the base model pi_0, "
    "given the question as a plain user turn QA(q) (NaN for a row without a usable question or answer).",
    "patch_nll_kept": "The same for the answer kept in the row (equal to `patch_nll_original` for a fallback): "
    "lower means closer to what the model would write itself.",
    "patch_num_feasible": "How many of the row's generated candidates passed the gate (0 for a row not generated); "
    "the one with the lowest NLL was kept, if it was closer to pi_0 than the expert answer.",
}

CITATION = f"""```bibtex
@misc{{patchdist2026,
  title         = {{{PAPER_TITLE}}},
  year          = {{2026}},
  eprint        = {{{PAPER_ID}}},
  archivePrefix = {{arXiv}},
  url           = {{{PAPER_URL}}}
}}
```"""


def _as_list(value: Any) -> list[str] | None:
    if not value:
        return None
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple, dict)):
        return f"`{json.dumps(value)}`"
    return str(value)


def _flatten(summary: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in summary.items():
        if isinstance(value, Mapping) and value:
            rows += _flatten(value, f"{prefix}{key}/")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


# Keys of ``training_summary`` that go into the YAML metadata instead of the table.
_SUMMARY_METADATA_KEYS = ("license", "dataset", "datasets")


def _training_method(config: RewriterConfig) -> str:
    """How the adapter was trained, from its training summary: GRPO, RFT (expert iteration) or RFT then GRPO."""
    summary = config.training_summary or {}
    if "rft" not in summary:
        return "GRPO"
    if summary.get("global_step"):
        return "rejection-sampling fine-tuning (RFT) as a warm start, then GRPO"
    return "rejection-sampling fine-tuning (RFT) alone, without GRPO steps"


def _training_section(config: RewriterConfig) -> str:
    summary = {k: v for k, v in (config.training_summary or {}).items() if k not in _SUMMARY_METADATA_KEYS}
    weights = f"Reward weights: lambda_dist = {config.lambda_dist}, lambda_div = {config.lambda_div}."
    if not config.has_adapter:
        return (
            "This rewriter has no trained adapter: it is the *prompted-rewrite* baseline, the base model prompted to "
            f"rewrite. Train an adapter with `RewriterTrainer` to get the RL rewriter. {weights}"
        )
    if not summary:
        return f"No training summary was recorded with this adapter. {weights}"
    table = ["| statistic | value |", "|---|---|"] + [f"| {k} | {_format_value(v)} |" for k, v in _flatten(summary)]
    method = _training_method(config)
    if method == "GRPO":
        how = (
            "The adapter was trained with GRPO against the paper's three rewards: a hard task-consistency gate, "
            f"distributional alignment under the frozen base model, and diversity within each group. {weights}"
        )
    else:
        how = (
            f"The adapter was trained with {method}: fine-tuned on the rewrites of its training rows that passed the "
            "gate and were closer to the base model than their expert answers (`rft` below: what sampled them, the "
            f"gate, how many rows were kept). The reward weights apply to GRPO steps. {weights}"
        )
    return how + "\n\n" + "\n".join(table)


def rewriter_card_data(config: RewriterConfig, *, license: str | None = None) -> ModelCardData:
    """The YAML metadata of a rewriter's model card.

    Args:
        config: The rewriter's config (``training_summary`` may carry ``license`` and ``dataset(s)``).
        license: The license, when known (e.g. the base model's); overrides the training summary's.
    """
    summary = config.training_summary or {}
    tags = list(REWRITER_TAGS) + (["peft", "lora"] if config.has_adapter else ["prompted-rewrite"])
    return ModelCardData(
        base_model=hub_base_model(config),
        library_name=LIBRARY_NAME,
        license=license or summary.get("license"),
        datasets=_as_list(summary.get("datasets") or summary.get("dataset")),
        tags=tags,
    )


def build_rewriter_card(
    config: RewriterConfig,
    repo_id: str | None = None,
    *,
    license: str | None = None,
    fingerprint: str | None = None,
) -> ModelCard:
    """The model card of a rewriter: what it does, how to use it, its settings and training summary.

    Args:
        config: The rewriter's :class:`~hf_patchdist.rewriter.RewriterConfig`.
        repo_id: Where it is (or will be) on the Hub, for the usage snippet.
        license: License, when known.
        fingerprint: :meth:`Rewriter.fingerprint`, recorded so that patched data sets can be traced to it.

    Example:
        ```python
        from hf_patchdist.hub.cards import build_rewriter_card
        from hf_patchdist.rewriter import RewriterConfig

        card = build_rewriter_card(RewriterConfig(base_model="HuggingFaceTB/SmolLM2-135M-Instruct"), "me/rw")
        card.data.tags  # ['hf-patchdist', 'rewriter', ...]
        ```
    """
    name = repo_id or "path/to/this-rewriter"
    base = base_model_text(config)
    verifier = config.verifier.get("name", "custom") if isinstance(config.verifier, Mapping) else "custom"
    if config.has_adapter:
        kind = (
            "a **trained rewriter**: a LoRA adapter on the frozen base model that rewrites SFT targets into the "
            f"model's own words, trained with {_training_method(config)}"
        )
    else:
        kind = "a **prompted rewriter** (no trained adapter): the base model is prompted to rewrite SFT targets"
    generation = config.generation or {}
    qa = "the base model's chat template" if config.qa_template is None else f"the template `{config.qa_template!r}`"
    settings = [
        "| setting | value |",
        "|---|---|",
        f"| base model | {base} |",
        f"| adapter | {'LoRA' if config.has_adapter else 'none (prompted baseline)'} |",
        f"| task-consistency gate (verifier) | `{verifier}` |",
        f"| candidates per example | {config.num_candidates} |",
        f"| max new tokens | {generation.get('max_new_tokens', 'n/a')} |",
        f"| sampling | {'yes' if generation.get('do_sample') else 'no (greedy)'} |",
        f"| QA(q) rendered with | {qa} |",
        f"| format version | {config.format_version} |",
    ]
    if fingerprint:
        settings.append(f"| fingerprint | `{fingerprint}` |")
    body = f"""
# {name.rsplit("/", 1)[-1]}

This is {kind}. Base model: {base}. It was made with `hf-patchdist`, an implementation of
[*{PAPER_TITLE}*]({PAPER_URL}) for the Hugging Face training stack.

Supervised fine-tuning on expert demonstrations drags a model toward text it would never write, and it forgets
what it knew. A rewriter *patches* the data instead of the loss: for each example it re-derives the expert
answer in the base model's own words, keeps it only when the task-consistency gate (`{verifier}`) accepts it
(same final answer, valid reasoning), and otherwise falls back to the expert answer (Generate-Verify-Fallback).
Fine-tune the base model on the patched data set as usual.

## Usage

```python
from datasets import load_dataset
from hf_patchdist import Rewriter

rewriter = Rewriter.from_pretrained("{name}")
dataset = load_dataset("openai/gsm8k", "main", split="train")  # or any SFT data set in a TRL format
patched = dataset.map(rewriter, batched=True, batch_size=16)
patched.push_to_hub("your-name/gsm8k-patched")  # or hf_patchdist.hub.push_patched_dataset, with a card
```

From the command line:

```bash
hf-patchdist rewrite --rewriter {name} --dataset openai/gsm8k --dataset-config main --output patched/
```

The rewriter reads conversational `messages`, `prompt`/`completion` and plain question/answer columns, leaves the
format as it found it, and adds the provenance columns {", ".join(f"`{c}`" for c in PATCH_COLUMNS)}.

## Settings

{chr(10).join(settings)}

## Training

{_training_section(config)}

## Citation

{CITATION}
"""
    card_data = rewriter_card_data(config, license=license)
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")


def rewriter_record(rewriter: Rewriter | str | None) -> dict[str, Any] | None:
    """What a data set card records about the rewriter that made it (``id`` is None when it has no Hub id).

    Args:
        rewriter: A :class:`~hf_patchdist.rewriter.Rewriter` (its Hub id is ``.source`` when it came from
            ``from_pretrained``), a Hub id, or None.
    """
    if rewriter is None:
        return None
    if isinstance(rewriter, str):
        return {"id": rewriter if is_hub_repo_id(rewriter) else None}
    source = getattr(rewriter, "source", None)
    config = rewriter.config
    verifier = config.verifier.get("name", "custom") if isinstance(config.verifier, Mapping) else "custom"
    return {
        "id": source if is_hub_repo_id(source) else None,
        "base_model": hub_base_model(config) or config.base_model.rstrip("/").rsplit("/", 1)[-1],
        "adapter": bool(config.has_adapter),
        "verifier": verifier,
        "num_candidates": config.num_candidates,
        "fingerprint": rewriter.fingerprint(),
    }


def _rewriter_text(record: Mapping[str, Any] | None) -> str:
    if not record:
        return "not recorded"
    text = hub_link(record["id"]) if record.get("id") else "a rewriter without a Hub id"
    details = []
    if "adapter" in record:
        details.append("RL rewriter (LoRA adapter)" if record["adapter"] else "prompted rewrite (no adapter)")
    if record.get("base_model"):
        details.append(f"base model `{record['base_model']}`")
    if record.get("verifier"):
        details.append(f"gate `{record['verifier']}`")
    if record.get("num_candidates"):
        details.append(f"{record['num_candidates']} candidate(s) per example")
    if record.get("fingerprint"):
        details.append(f"fingerprint `{record['fingerprint']}`")
    return text + (f" ({', '.join(details)})" if details else "")


def _dataset_section(repo_id: str, splits: Mapping[str, Mapping[str, Any]]) -> str:
    stats_blocks = []
    for split, entry in splits.items():
        stats = PatchStatistics(**entry["patch_statistics"])
        stats_blocks.append(
            f"### Split `{split}`\n\nRewriter: {_rewriter_text(entry.get('rewriter'))}\n\n{stats.to_markdown()}"
        )
    columns = "\n".join(f"| `{c}` | {PATCH_COLUMN_DESCRIPTIONS[c]} |" for c in PATCH_COLUMNS)
    first = next(iter(splits), "train")
    return f"""{CARD_BEGIN}
# Patched data set: {repo_id.rsplit("/", 1)[-1]}

The SFT targets of this data set were *patched* with `hf-patchdist`
([*{PAPER_TITLE}*]({PAPER_URL})): each expert answer was rewritten into the words the base model would use
itself, kept when the task-consistency gate accepted the rewrite (same final answer, valid reasoning), and
otherwise left as it was (fallback). Fine-tuning on it moves the model less far from what it already knows.
The format of the original data set is unchanged; four provenance columns were added.

## Patch statistics

NLL figures are mean per-token negative log-likelihoods under the base model pi_0 given the question alone:
lower means closer to the model's own distribution.

{chr(10).join(stats_blocks)}

## Provenance columns

| column | meaning |
|---|---|
{columns}

## Usage

```python
from datasets import load_dataset

patched = load_dataset("{repo_id}", split="{first}")
rewritten_only = patched.filter(lambda row: row["patch_source"] == "rewrite")
sft_ready = patched.remove_columns({json.dumps(list(PATCH_COLUMNS))})  # if your trainer does not ignore extra columns
```

## Citation

{CITATION}
{CARD_END}
"""


def build_patched_dataset_card(
    statistics: Mapping[str, PatchStatistics],
    repo_id: str,
    *,
    rewriter: Rewriter | str | None = None,
    existing: DatasetCard | None = None,
) -> DatasetCard:
    """The card of a patched data set, merged into ``existing`` (the README ``datasets`` wrote; edited in place).

    ``existing``'s metadata (``configs``, ``dataset_info``...) and text outside our markers are kept; the patch
    statistics and rewriter of the splits in ``statistics`` are added to, or replace, those already recorded
    under the ``hf_patchdist`` metadata key.

    Args:
        statistics: :class:`~hf_patchdist.patch_statistics.PatchStatistics` by split name.
        repo_id: The data set's repo id.
        rewriter: The rewriter that made these splits (object or Hub id), if known.
        existing: The current card, if any.

    Example:
        ```python
        from hf_patchdist.hub.cards import build_patched_dataset_card
        from hf_patchdist.patch_statistics import PatchStatistics

        card = build_patched_dataset_card({"train": PatchStatistics.from_dataset(patched)}, "me/gsm8k-patched")
        card.data.hf_patchdist["splits"]["train"]["patch_statistics"]["rewritten"]
        ```
    """
    from .. import __version__

    # Edit the existing card in place: it keeps the order of its YAML keys on the way out.
    card = existing if existing is not None else DatasetCard("---\n{}\n---\n")
    data, text = card.data, card.text
    tags = list(getattr(data, "tags", None) or [])
    data.tags = tags + [t for t in DATASET_TAGS if t not in tags]
    meta = dict(getattr(data, "hf_patchdist", None) or {})
    splits = dict(meta.get("splits") or {})
    record = rewriter_record(rewriter)
    for split, stats in statistics.items():
        splits[split] = {"patch_statistics": stats.to_dict(), "rewriter": record}
    data.hf_patchdist = {"version": __version__, "splits": splits}

    section = _dataset_section(repo_id, splits)
    if CARD_BEGIN in text and CARD_END in text:
        head, rest = text.split(CARD_BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(CARD_END, 1)[1]
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "\n") + section
    card.text = text
    return card


def save_rewriter_folder(folder: str | os.PathLike, config: RewriterConfig, model: Any = None) -> Path:
    """Write what ``Rewriter.from_pretrained(folder)`` loads, and a model card.

    ``model``'s LoRA adapter (when given), ``rewriter_config.json`` and ``README.md``: the rewriter's own card
    (:func:`build_rewriter_card`) in place of PEFT's blank template, which names the local
    path of the base model. A ``README.md`` the folder held before is kept (PEFT adds its tags to it).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    card = folder / "README.md"
    had_card = card.is_file()
    if model is not None:
        model.save_pretrained(folder, safe_serialization=True)
    config.save(folder)
    if not had_card:
        build_rewriter_card(config).save(card)
    return folder
