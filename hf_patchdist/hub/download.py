"""Download rewriters from the Hub (or take a local folder), refusing pickled weights; check a base model is reachable.

Every transfer goes through ``huggingface_hub`` (``snapshot_download``, ``hf_hub_download``), so caching,
``HF_HUB_OFFLINE``, ``HF_HOME``, ``HF_ENDPOINT`` and tokens behave as everywhere else in the Hugging Face stack.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..models import EMBEDDED_MODELS, embedded_gguf_path
from ..rewriter.config import ADAPTER_WEIGHTS_NAME, REWRITER_CONFIG_NAME
from .ids import is_hub_repo_id


logger = logging.getLogger(__name__)

REWRITER_FILES = [REWRITER_CONFIG_NAME, "adapter_config.json", ADAPTER_WEIGHTS_NAME, "README.md"]
# Files of an adapter stored as a pickle: never downloaded, only looked for to explain a refusal.
PICKLED_ADAPTER_PATTERNS = ("adapter_model.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt")


def download_rewriter(name_or_path: str | os.PathLike, *, revision: str | None = None, token: str | None = None) -> Path:
    """Return a local folder holding the rewriter ``name_or_path`` (a folder, or a Hub repo id).

    Downloads through ``huggingface_hub.snapshot_download`` (cached; honours ``HF_HUB_OFFLINE`` and
    ``HF_HOME``), fetching only the rewriter's files: pickled weights are never downloaded.

    Args:
        name_or_path: A local rewriter folder or a Hub repo id (``org/name``).
        revision: Branch, tag or commit of the Hub repo.
        token: Hub token, for private or gated repos (default: the stored token / ``HF_TOKEN``).

    Raises:
        FileNotFoundError: When the folder or repo does not exist, or has no ``rewriter_config.json``.
        ValueError: When the repo's adapter is stored only as a pickle.
        OSError: When the Hub cannot be reached and nothing is cached, or access is refused.

    Example:
        ```python
        folder = download_rewriter("org/gsm8k-rewriter", revision="v1")
        sorted(p.name for p in folder.iterdir())  # ['README.md', 'adapter_config.json', ...]
        ```
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    repo_id = str(name_or_path)
    if not is_hub_repo_id(repo_id):
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
    if not (folder / "adapter_model.safetensors").is_file() and _config_has_adapter(folder):
        _refuse_pickled_adapter(repo_id, revision, token)
    return folder


def _config_has_adapter(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "rewriter_config.json").read_text()).get("has_adapter"))
    except (OSError, ValueError, AttributeError):  # RewriterConfig.from_folder reports a bad config properly
        return False


def _refuse_pickled_adapter(repo_id: str, revision: str | None, token: str | None) -> None:
    """Explain why an adapter is missing when the repo holds it only as a pickle (never downloaded)."""
    import fnmatch

    from huggingface_hub import HfApi

    try:
        files = HfApi(token=token).list_repo_files(repo_id, revision=revision)
    except Exception:  # offline or flaky: check_adapter_folder will still say the weights are missing
        return
    pickled = [f for f in files if any(fnmatch.fnmatch(f.rsplit("/", 1)[-1], p) for p in PICKLED_ADAPTER_PATTERNS)]
    if pickled:
        raise ValueError(
            f"The adapter of the rewriter {repo_id!r} is stored as a pickle on the Hub ({', '.join(sorted(pickled))}); "
            "hf-patchdist loads safetensors only, because unpickling can run arbitrary code. Ask its author to push "
            "adapter_model.safetensors (PeftModel.save_pretrained(..., safe_serialization=True)), or convert it "
            "yourself after checking where it comes from."
        )


def check_base_model(name: str, *, token: str | None = None, rewriter: str | None = None) -> None:
    """Check that a rewriter's base model can be loaded here, before anything heavy is loaded.

    Resolvable means: an embedded alias whose package is installed, an existing local folder, or a Hub id whose
    ``config.json`` can be fetched (or is cached, when offline). Only ``config.json`` is fetched; the weights
    are downloaded later by transformers, from the same cache.

    Args:
        name: ``base_model`` from ``rewriter_config.json``.
        token: Hub token for a private or gated base model.
        rewriter: The rewriter's id or folder, for the message.

    Raises:
        OSError: Naming the base model, why it cannot be loaded, and what to do (including ``model=``).
    """
    owner = f"The rewriter {rewriter!r} needs" if rewriter else "This rewriter needs"
    override = "or pass model= (an embedded alias, a local folder or a Hub id) to Rewriter.from_pretrained"
    if name in EMBEDDED_MODELS:
        try:
            embedded_gguf_path(name)
        except FileNotFoundError as error:
            raise OSError(
                f"{owner} the embedded base model {name!r}, which is not available here: {error} "
                f"Alternatively pass model={EMBEDDED_MODELS[name].hub_original!r} (its Hub original)."
            ) from error
        return
    if Path(name).is_dir():
        return
    if not is_hub_repo_id(name):
        raise OSError(
            f"{owner} the base model {name!r}, a local folder that does not exist on this machine: copy the base "
            f"model there, {override}."
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        hf_hub_download(name, "config.json", token=token)
    except GatedRepoError as error:
        raise OSError(
            f"{owner} the base model {name!r}, which is gated on the Hub: accept its terms there and pass token=, "
            f"{override}."
        ) from error
    except RepositoryNotFoundError as error:
        raise OSError(
            f"{owner} the base model {name!r}, which the Hub does not have (or it is private: pass token= or run "
            f"`hf auth login`), {override}."
        ) from error
    except LocalEntryNotFoundError as error:  # before EntryNotFoundError: it subclasses it
        raise OSError(
            f"{owner} the base model {name!r}, which is not in the local cache, and the Hub is not reachable "
            f"(offline or HF_HUB_OFFLINE=1): download it once with network access, {override}."
        ) from error
    except (EntryNotFoundError, RevisionNotFoundError) as error:
        raise OSError(
            f"{owner} the base model {name!r}, but that Hub repo has no config.json: it is not a transformers "
            f"model, {override}."
        ) from error
    except (OSError, ValueError) as error:
        raise OSError(f"{owner} the base model {name!r}, which could not be fetched from the Hub ({error}).") from error


# ---------------------------------------------------------------------------------------------------------------
# push
