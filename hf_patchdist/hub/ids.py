"""Hub ids and links: what reads as a repo id, and how cards link a model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..models import EMBEDDED_MODELS


if TYPE_CHECKING:
    from ..rewriter.config import RewriterConfig


def is_hub_repo_id(name: str | os.PathLike | None) -> bool:
    """Whether ``name`` reads as a Hub repo id (``org/name`` or ``name``) rather than a local path.

    A name that exists on disk, is absolute, starts with ``.`` or ``~`` or has more than one ``/`` is a path.
    """
    if name is None:
        return False
    text = str(name)
    if not text or Path(text).exists() or Path(text).is_absolute() or text.startswith((".", "~")):
        return False
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def hub_base_model(config: RewriterConfig) -> str | None:
    """The Hub id of a rewriter's base model: the Hub original of an embedded alias, a Hub id as it is, or None
    for a local folder (which means nothing to someone else)."""
    if config.base_model_hub_original:
        return config.base_model_hub_original
    if config.base_model in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[config.base_model].hub_original
    return config.base_model if is_hub_repo_id(config.base_model) else None


def hub_link(repo_id: str, repo_type: str = "model") -> str:
    """A markdown link to a Hub repo on the endpoint in use (``HF_ENDPOINT``)."""
    from huggingface_hub import constants

    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"[{repo_id}]({constants.ENDPOINT}/{prefix}{repo_id})"


def base_model_text(config: RewriterConfig) -> str:
    """How a card names a rewriter's base model: a Hub link, or a local folder's name (never a path of the author's machine)."""
    hub_id = hub_base_model(config)
    if hub_id is None:  # a local folder: show its name, not a path of the author's machine
        return f"a local model (`{config.base_model.rstrip('/').rsplit('/', 1)[-1]}`)"
    if hub_id != config.base_model:
        return f"{hub_link(hub_id)} (as `{config.base_model}`)"
    return hub_link(hub_id)
