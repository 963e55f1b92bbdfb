"""Hub access for rewriters: download (cached, offline-aware) with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

REWRITER_FILES = ["rewriter_config.json", "adapter_config.json", "adapter_model.safetensors", "README.md"]


def download_rewriter(name_or_path: str | os.PathLike, *, revision: str | None = None, token: str | None = None) -> Path:
    """Return a local folder holding the rewriter ``name_or_path`` (a folder, or a Hub repo id).

    Downloads through ``huggingface_hub.snapshot_download`` (cached; honours ``HF_HUB_OFFLINE`` and
    ``HF_HOME``), fetching only the rewriter's files: pickled weights are never downloaded.

    Raises:
        FileNotFoundError: When the folder or repo does not exist, or has no ``rewriter_config.json``.
        OSError: When the Hub cannot be reached and nothing is cached, or access is refused.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    repo_id = str(name_or_path)
    if path.is_absolute() or str(name_or_path).startswith((".", "~")) or repo_id.count("/") > 1:
        raise FileNotFoundError(f"Rewriter folder {repo_id!r} does not exist.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        folder = Path(
            snapshot_download(repo_id, revision=revision, token=token, allow_patterns=REWRITER_FILES)
        )
    except RevisionNotFoundError as error:
        raise FileNotFoundError(f"Rewriter {repo_id!r} has no revision {revision!r} on the Hub.") from error
    except GatedRepoError as error:
        raise OSError(f"Access to the rewriter {repo_id!r} is gated: accept its terms on the Hub and pass a token.") from error
    except RepositoryNotFoundError as error:
        raise FileNotFoundError(
            f"Rewriter {repo_id!r} was not found: it is not a local folder, and the Hub has no such repository "
            "(or it is private: pass token= or run `hf auth login`)."
        ) from error
    except LocalEntryNotFoundError as error:
        raise OSError(
            f"Cannot load the rewriter {repo_id!r}: the Hub is not reachable (offline or HF_HUB_OFFLINE=1) and it "
            "is not in the local cache. Download it once with network access, or pass a local folder."
        ) from error
    except (OSError, ValueError) as error:
        raise OSError(f"Cannot download the rewriter {repo_id!r} from the Hub: {error}") from error
    if not (folder / "rewriter_config.json").is_file():
        raise FileNotFoundError(
            f"Hub repository {repo_id!r} is not a rewriter: it has no rewriter_config.json "
            "(a rewriter holds rewriter_config.json and a LoRA adapter in safetensors)."
        )
    return folder
