"""Patch a data set once and keep the result on disk, keyed by what decides the rewrites.

``Dataset.map``'s own cache only helps for data sets backed by cache files, and it keys the result by hashing
the mapped function, which for a :class:`~hf_patchdist.rewriter.Rewriter` holding a loaded model means
pickling the model: slow, and not stable across processes. Here the key is explicit:

* the data set's ``_fingerprint`` (for in-memory sets built with ``Dataset.from_list``/``from_dict``, datasets
  hashes the Arrow table itself, so it is stable across processes; for sets read from files it follows the
  files), its number of rows, columns and features;
* :meth:`Rewriter.fingerprint` (config, adapter weights hash, columns);
* the patch options (candidates, batch size, columns) and the versions of this cache, of the gate's verdicts
  (:data:`~hf_patchdist.verifiers.GATE_VERSION`) and of hf-patchdist.

The patched set (input format unchanged, plus the provenance columns) is saved with ``save_to_disk`` under
``<cache_dir>/<key>`` and read back with ``load_from_disk`` (memory-mapped, so a second construction costs the
time to open a file).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..patch_statistics import PatchStatistics
from ..verifiers.presets import GATE_VERSION


if TYPE_CHECKING:
    from .rewriter import Rewriter


logger = logging.getLogger(__name__)

# Bump when what a cached entry holds, or how the rewrites it stores are decided, changes: an old entry
# under the same key would otherwise be reused silently.
CACHE_FORMAT_VERSION = 3  # 2: the gate of issue 14 (GATE_VERSION 2), patch_source "copy", patch_rejected; 3: best-of-K selection (require_lower_nll), patch_num_feasible
PATCH_INFO_NAME = "patch_info.json"


def default_patch_cache_dir() -> Path:
    """``<datasets cache>/hf_patchdist``: next to the data sets it derives from (follows ``HF_DATASETS_CACHE``)."""
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "hf_patchdist"


def patch_options(rewriter: Rewriter) -> dict[str, Any]:
    """The options of a patch run, as recorded in the cache key and in ``patch_info.json``."""
    return {
        "num_candidates": rewriter.config.num_candidates,
        "batch_size": rewriter.batch_size,
        "question_column": rewriter.question_column,
        "answer_column": rewriter.answer_column,
    }


def patch_cache_key(dataset: Any, rewriter: Rewriter, rewriter_fingerprint: str | None = None) -> str:
    """The cache key of patching ``dataset`` with ``rewriter``: 32 hex characters.

    Args:
        dataset: A ``datasets.Dataset``.
        rewriter: The rewriter, with its options already applied.
        rewriter_fingerprint: ``rewriter.fingerprint()`` when already computed (it hashes the adapter's weights).
    """
    record = {
        "cache_format": CACHE_FORMAT_VERSION,
        # The verdicts of an unchanged gate configuration change with the gate's code: see GATE_VERSION.
        "gate_version": GATE_VERSION,
        "hf_patchdist": _package_version(),
        "dataset": {
            "fingerprint": dataset._fingerprint,
            "rows": len(dataset),
            "columns": list(dataset.column_names),
            "features": dataset.features.to_dict() if dataset.features is not None else None,
        },
        "rewriter": rewriter_fingerprint or rewriter.fingerprint(),
        "options": patch_options(rewriter),
    }
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _package_version() -> str:
    # A new release may rewrite differently: its patched sets are not reused.
    try:
        return importlib.metadata.version("hf-patchdist")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class PatchResult:
    """A patched data set and what it took to get it: what :meth:`Rewriter.patch_dataset` returns.

    Attributes:
        dataset: The patched data set (input format, plus the provenance columns).
        statistics: Its :class:`~hf_patchdist.patch_statistics.PatchStatistics`.
        key: The cache key ("" when the data set came in already patched).
        path: Folder of the cached copy, or None when the cache was not used.
        from_cache: Whether the data set was read from the cache instead of generated.
        rewriter_fingerprint: :meth:`Rewriter.fingerprint` when the set was patched (None when it came in
            already patched): the rewriter's weights may change later (a loaded model that is then trained).
    """

    dataset: Any
    statistics: PatchStatistics
    key: str
    path: Path | None
    from_cache: bool
    rewriter_fingerprint: str | None = None

    @classmethod
    def of(
        cls, dataset: Any, key: str = "", path: Path | None = None, from_cache: bool = False, rewriter_fingerprint: str | None = None
    ) -> PatchResult:
        """A result for ``dataset``, its statistics computed from its provenance columns."""
        return cls(dataset, PatchStatistics.from_dataset(dataset), key, path, from_cache, rewriter_fingerprint)


def _load(path: Path) -> Any:
    import datasets

    return datasets.load_from_disk(str(path))


def load_cached(path: Path) -> Any:
    """The patched set stored under ``path``, or None when there is no complete entry (a broken one is removed)."""
    if not (path / PATCH_INFO_NAME).is_file():
        return None
    try:
        patched = _load(path)
    except Exception as error:  # a half-deleted or foreign folder must not block training: patch again
        logger.warning("The patch cache %s cannot be read (%s); patching again.", path, error)
        shutil.rmtree(path, ignore_errors=True)
        return None
    logger.info("Loaded the patched training set from the cache %s", path)
    return patched


def patch_with_cache(
    dataset: Any,
    rewriter: Rewriter,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    desc: str = "Patching the training set",
) -> PatchResult:
    """Patch ``dataset`` with ``rewriter`` through ``Dataset.map`` (batched), or read the result from the cache.

    Args:
        dataset: A ``datasets.Dataset`` in a format the rewriter reads.
        rewriter: The rewriter (its ``batch_size`` is the map batch size).
        cache_dir: Cache folder; None for :func:`default_patch_cache_dir`.
        use_cache: Read and write the cache; False always generates and writes nothing.
        desc: Progress bar description.

    Returns:
        A :class:`PatchResult`.

    Example:
        ```python
        result = patch_with_cache(dataset, Rewriter(question_column="question", answer_column="answer"))
        result.from_cache, result.dataset["patch_source"][:4]
        ```
    """
    fingerprint = rewriter.fingerprint()
    key = patch_cache_key(dataset, rewriter, fingerprint)
    root = Path(cache_dir) if cache_dir is not None else default_patch_cache_dir()
    path = root / key
    cached = load_cached(path) if use_cache else None
    if cached is not None:
        return PatchResult.of(cached, key, path, True, fingerprint)

    # The key is given to map as its fingerprint, so that datasets does not hash the rewriter (which would pickle
    # a loaded model) and does not write a second cache file next to the source data: we keep our own copy.
    patched = rewriter.rewrite(
        dataset, new_fingerprint=key, keep_in_memory=True, load_from_cache_file=False, desc=desc
    )
    if not use_cache:
        return PatchResult.of(patched, key, rewriter_fingerprint=fingerprint)

    statistics = PatchStatistics.from_dataset(patched)
    store_patched(patched, dataset, rewriter, key=key, fingerprint=fingerprint, path=path, statistics=statistics)
    # Train on the cached copy, so that a first and a second run see the very same (file-backed) data set.
    return PatchResult(_load(path), statistics, key, path, False, fingerprint)


def store_patched(
    patched: Any, dataset: Any, rewriter: Rewriter, *, key: str, fingerprint: str, path: Path, statistics: PatchStatistics
) -> None:
    """Write a patched set under ``path`` (a cache entry named by its key), atomically, with ``patch_info.json``."""
    root = path.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        patched.save_to_disk(str(tmp))
        info = {
            "key": key,
            "cache_format": CACHE_FORMAT_VERSION,
            "dataset_fingerprint": dataset._fingerprint,
            "rows": len(dataset),
            "rewriter_fingerprint": fingerprint,
            "rewriter_config": rewriter.config.to_dict(),
            "rewriter_source": getattr(rewriter, "source", None),
            "options": patch_options(rewriter),
            "statistics": statistics.to_dict(),
        }
        # Written last: its presence marks a complete entry.
        (tmp / PATCH_INFO_NAME).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
        if path.exists() and not (path / PATCH_INFO_NAME).is_file():
            shutil.rmtree(path, ignore_errors=True)  # an incomplete leftover (never renamed into place by us)
        try:
            tmp.rename(path)  # atomic: a concurrent reader never sees half an entry
        except OSError:
            if not (path / PATCH_INFO_NAME).is_file():
                raise
            # Another process stored the same key first; its result is as good as ours.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Stored the patched training set in the cache %s", path)
