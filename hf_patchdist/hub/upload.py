"""Push rewriters and patched data sets to the Hub with their cards, turning the Hub's errors into clear ones.

Uploads go through ``huggingface_hub`` (``upload_folder``, ``create_branch``, ``DatasetCard.push_to_hub``) and
``datasets`` (``Dataset.push_to_hub``). This module only chooses the files, builds the cards (see
:mod:`hf_patchdist.hub.cards`) and names the repository and what to do when the Hub refuses.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..patch_statistics import PatchStatistics
from ..rewriter.config import ADAPTER_WEIGHTS_NAME, RewriterConfig, check_adapter_folder
from .cards import build_patched_dataset_card, build_rewriter_card
from .download import REWRITER_FILES
from .ids import hub_base_model


if TYPE_CHECKING:
    from ..rewriter import Rewriter


logger = logging.getLogger(__name__)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of the HTTP client that huggingface_hub uses (httpx2 in 2.x, httpx before)."""
    errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        return (*errors, module.TransportError)
    return errors


@contextmanager
def _push_errors(repo_id: str, what: str, repo_type: str = "model") -> Iterator[None]:
    """Turn the Hub errors a push meets into messages that name the repo and say what to do."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalTokenNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    kind = "data set" if repo_type == "dataset" else "model"
    login = "run `hf auth login` (or set HF_TOKEN, or pass token=) with a token that has write access"
    try:
        yield
    except OfflineModeIsEnabled as error:
        raise OSError(
            f"Cannot push {what} to {repo_id!r}: offline mode is on (HF_HUB_OFFLINE=1). Unset HF_HUB_OFFLINE to push."
        ) from error
    except LocalTokenNotFoundError as error:
        raise PermissionError(f"Cannot push {what} to {repo_id!r}: no Hub token found; {login}.") from error
    except RevisionNotFoundError as error:
        raise FileNotFoundError(f"Cannot push {what} to {repo_id!r}: the revision does not exist ({error}).") from error
    except RepositoryNotFoundError as error:
        raise FileNotFoundError(
            f"Cannot push {what} to {repo_id!r}: the Hub has no such {kind} repo, or the token in use cannot see it. "
            f"Check the id and the namespace, and {login} to that namespace."
        ) from error
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        detail = getattr(error, "server_message", None) or str(error).splitlines()[0]
        if status == 401:
            raise PermissionError(
                f"Cannot push {what} to {repo_id!r}: the Hub refused the token ({detail}); {login}."
            ) from error
        if status == 403:
            raise PermissionError(
                f"Cannot push {what} to {repo_id!r}: the token in use may not write there ({detail}). Use a token with "
                f"write access to the {repo_id.split('/')[0]!r} namespace, or push under your own namespace."
            ) from error
        raise OSError(f"Cannot push {what} to {repo_id!r} ({constants.ENDPOINT}): {error}") from error
    except _transport_errors() as error:
        raise OSError(
            f"Cannot push {what} to {repo_id!r}: the Hub at {constants.ENDPOINT} is not reachable ({error}). "
            "Check the network connection and HF_ENDPOINT."
        ) from error


def _require_token(token: str | None, repo_id: str, what: str) -> None:
    """Fail before any upload work when no token is available at all (the Hub would answer 401 anyway)."""
    from huggingface_hub import get_token

    if token is None and get_token() is None:
        raise PermissionError(
            f"Cannot push {what} to {repo_id!r}: no Hub token found. Run `hf auth login` (or set HF_TOKEN, or pass "
            "token=) with a token that has write access."
        )


def _prepare_branch(api: Any, repo_id: str, revision: str | None, repo_type: str) -> None:
    # Committing to a branch needs the branch; like `datasets`, create it from main when it is new.
    if revision is not None and revision != "main" and not revision.startswith("refs/pr/"):
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)


def _base_model_license(config: Any, token: str | None) -> str | None:
    """The base model's license, from its card (local folder or Hub), when it can be found cheaply. Best effort."""
    from huggingface_hub import ModelCard


    candidates = [Path(config.base_model) / "README.md"] if Path(config.base_model).is_dir() else []
    try:
        for path in candidates:
            if path.is_file():
                return ModelCard.load(path, ignore_metadata_errors=True).data.license
        hub_id = hub_base_model(config)
        if hub_id is not None:
            return ModelCard.load(hub_id, token=token, ignore_metadata_errors=True).data.license
    except Exception as error:  # a license is a nicety: never fail a push for it
        logger.debug("No license found for the base model %s: %s", config.base_model, error)
    return None


def _point_adapter_config_at_hub(folder: Path, base_model: str | None) -> None:
    # PEFT records the base model as loaded, which for local or embedded models is a path on the trainer's machine.
    # On the Hub, the Hub id lets AutoPeftModel and the Hub's model tree find it; the rewriter itself ignores it.
    path = folder / "adapter_config.json"
    if base_model is None or not path.is_file():
        return
    data = json.loads(path.read_text())
    data["base_model_name_or_path"] = base_model
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def push_rewriter(
    rewriter: Rewriter | str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
) -> str:
    """Push a rewriter (adapter + ``rewriter_config.json`` + model card) to the Hub in one commit.

    Creates the repo when needed (``private`` applies only then) and the branch ``revision`` when it is new.
    Rewriter files that the new version no longer has (an adapter, for a prompted baseline) are deleted in the
    same commit, so the repo always holds one consistent rewriter.

    Args:
        rewriter: A :class:`~hf_patchdist.rewriter.Rewriter`, or a folder written by ``save_pretrained``
            (uploaded as it is, without loading any model).
        repo_id: ``org/name`` (or ``name``, in the token owner's namespace).
        private: Create the repo private (None: the Hub's default).
        token: Hub token with write access (default: the stored token / ``HF_TOKEN``).
        commit_message: Commit title.
        revision: Branch to commit to (created from ``main`` when new).

    Returns:
        The URL of the commit.

    Raises:
        PermissionError: No token, or the token may not write to ``repo_id``.
        OSError: Offline mode, the Hub unreachable, or another Hub failure (naming ``repo_id``).

    Example:
        ```python
        from hf_patchdist import Rewriter
        from hf_patchdist.hub import push_rewriter

        rewriter = Rewriter.from_pretrained("./my-rewriter")
        push_rewriter(rewriter, "me/gsm8k-rewriter")  # same as rewriter.push_to_hub("me/gsm8k-rewriter")
        ```
    """
    from huggingface_hub import HfApi


    what = "the rewriter"
    _require_token(token, repo_id, what)
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hf-patchdist-push-") as tmp:
        folder = Path(tmp)
        if isinstance(rewriter, (str, os.PathLike)):
            source = Path(rewriter)
            config = RewriterConfig.from_folder(source)
            if config.has_adapter:
                check_adapter_folder(source)
            for name in REWRITER_FILES[:-1]:  # the card is built fresh
                if (source / name).is_file():
                    (folder / name).write_bytes((source / name).read_bytes())
            fingerprint = None
        else:
            rewriter.save_pretrained(folder)
            config = rewriter.config
            fingerprint = rewriter.fingerprint()
        if config.has_adapter and not (folder / ADAPTER_WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"Cannot push {what} to {repo_id!r}: it has an adapter but no {ADAPTER_WEIGHTS_NAME}.")
        _point_adapter_config_at_hub(folder, hub_base_model(config))
        license = _base_model_license(config, token)
        with _push_errors(repo_id, what):
            repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
            repo_id = repo_url.repo_id  # a bare name gets the token owner's namespace
            _prepare_branch(api, repo_id, revision, "model")
            card = build_rewriter_card(config, repo_id, license=license, fingerprint=fingerprint)
            card.validate()  # the Hub's own YAML check, before anything is committed
            card.save(folder / "README.md")
            stale = [name for name in REWRITER_FILES if not (folder / name).is_file()]
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=commit_message or "Upload rewriter with hf-patchdist",
                revision=revision,
                allow_patterns=REWRITER_FILES,  # not whatever else save_pretrained or the user left there
                delete_patterns=stale or None,
            )
    logger.info("Pushed the rewriter to %s", commit.commit_url)
    return str(commit.commit_url)


def _split_name(dataset: Any, split: str | None) -> str:
    # `datasets` names the split after the Dataset's own split, which keeps slicing ("train[800:832]") that
    # push_to_hub then refuses: keep the base name.
    if split is not None:
        return split
    if getattr(dataset, "split", None) is None:
        return "train"
    return re.sub(r"\[.*\]$", "", str(dataset.split)) or "train"


def push_patched_dataset(
    dataset: Any,
    repo_id: str,
    *,
    rewriter: Rewriter | str | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    split: str | None = None,
) -> str:
    """Push a patched data set with ``datasets``' ``push_to_hub``, then merge the patch card into its README.

    ``datasets`` writes the README's ``configs``/``dataset_info`` metadata itself; this keeps them and adds
    the patch statistics (per split, in the YAML under ``hf_patchdist`` and as tables), the rewriter that made the
    data set (linked when it is a Hub id) and a description of the provenance columns. Pushing another split
    later keeps the statistics of the splits already there.

    Args:
        dataset: A patched ``Dataset`` or ``DatasetDict`` (with the provenance columns of
            :data:`~hf_patchdist.rewriter.PATCH_COLUMNS`).
        repo_id: Data set repo ``org/name``.
        rewriter: The :class:`~hf_patchdist.rewriter.Rewriter` that made it, or its Hub id.
        private: Create the repo private (None: the Hub's default).
        token: Hub token with write access.
        commit_message: Title of the data commit (the card gets its own commit).
        revision: Branch to push to (created from ``main`` when new).
        split: Split name for a ``Dataset`` (default: its own split without slicing, else ``"train"``).

    Returns:
        The URL of the card commit.

    Raises:
        ValueError: The data set is not patched (provenance columns missing).
        PermissionError / OSError: As :func:`push_rewriter`.

    Example:
        ```python
        from datasets import load_dataset
        from hf_patchdist import Rewriter
        from hf_patchdist.hub import push_patched_dataset

        rewriter = Rewriter.from_pretrained("org/gsm8k-rewriter")
        patched = load_dataset("openai/gsm8k", "main", split="train[:800]").map(rewriter, batched=True)
        push_patched_dataset(patched, "me/gsm8k-patched", rewriter=rewriter)
        ```
    """
    import datasets
    from huggingface_hub import DatasetCard, hf_hub_download


    what = "the patched data set"
    if isinstance(dataset, datasets.DatasetDict):
        if split is not None:
            raise ValueError("split= names the split of a single Dataset; a DatasetDict pushes its own splits.")
        statistics = {name: PatchStatistics.from_dataset(part) for name, part in dataset.items()}
        push_kwargs: dict[str, Any] = {}
    else:
        split = _split_name(dataset, split)
        statistics = {split: PatchStatistics.from_dataset(dataset)}
        push_kwargs = {"split": split}
    _require_token(token, repo_id, what)
    with _push_errors(repo_id, what, repo_type="dataset"):
        commit = dataset.push_to_hub(
            repo_id,
            private=private,
            token=token,
            commit_message=commit_message or "Upload patched data set with hf-patchdist",
            revision=revision,
            **push_kwargs,
        )
        repo_id = commit.repo_url.repo_id
        # Read back the README that `datasets` just wrote (at that very commit) and merge into it.
        readme = hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=commit.oid, token=token)
        card = build_patched_dataset_card(statistics, repo_id, rewriter=rewriter, existing=DatasetCard.load(readme))
        card.validate()
        card_commit = card.push_to_hub(
            repo_id,
            token=token,
            repo_type="dataset",
            commit_message="Add the hf-patchdist patch card",
            revision=revision,
            parent_commit=commit.oid,  # fail rather than overwrite a README changed in between
        )
    logger.info("Pushed the patched data set to %s", card_commit)
    return str(card_commit)
