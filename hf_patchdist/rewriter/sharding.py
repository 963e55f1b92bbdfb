"""Patch one data set over the processes of a distributed run (``accelerate launch``, torchrun).

Every process calls :func:`patch_sharded` with the same data set and rewriter. The rows are split
into contiguous runs of whole ``map`` batches, one run per process; each process rewrites its run,
the rewritten columns are gathered to every process, and each process applies them to the whole
set, so that all of them train on the same patched set. The main process alone writes the cache
entry. No process waits at a barrier while another generates: the only collectives are a broadcast
of the cache key, two small gathers of flags and the gather of the results.

Why it is done this way:

* the cache key is the main process's key of the *whole* set, computed before sharding: a data
  set fingerprint that fell back to a random one, or a rewriter that hashes differently on one
  process, must not make the processes disagree on what they are patching;
* the shards are made of whole batches of the one-process ``map``, so every generation and scoring
  batch holds the same rows as in a one-process run (padding changes outputs): greedy float32
  rewriting gives the one-process result;
* ``gather_object`` flattens one level, so what is gathered is each process's list of row dicts;
  contiguous shards in process order concatenate back to the data set's order (no padded or
  repeated rows, unlike ``split_between_processes`` with padding).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..patch_statistics import PatchStatistics
from .cache import PatchResult, default_patch_cache_dir, load_cached, patch_cache_key, patch_with_cache, store_patched
from .config import PATCH_COLUMNS, REJECTED_COLUMN


if TYPE_CHECKING:
    from .rewriter import Rewriter

logger = logging.getLogger(__name__)


def shard_bounds(rows: int, batch_size: int, num_processes: int, process_index: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of process ``process_index``: a contiguous run of whole batches of ``batch_size``.

    The batches are split as evenly as they go; the first processes take one more batch when they do not
    divide, and a process may get no row at all (fewer batches than processes).

    Example:
        ```python
        >>> [shard_bounds(10, 2, 2, rank) for rank in (0, 1)]  # batches [0:2] [2:4] [4:6] | [6:8] [8:10]
        [(0, 6), (6, 10)]
        >>> [shard_bounds(3, 4, 2, rank) for rank in (0, 1)]
        [(0, 3), (3, 3)]
        ```
    """
    batch_size = max(int(batch_size), 1)
    batches = -(-rows // batch_size)
    per_process, extra = divmod(batches, num_processes)
    first = process_index * per_process + min(process_index, extra)
    last = first + per_process + (1 if process_index < extra else 0)
    return min(first * batch_size, rows), min(last * batch_size, rows)


def patch_sharded(
    dataset: Any,
    rewriter: Rewriter,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    desc: str = "Patching the training set",
) -> PatchResult:
    """Patch ``dataset`` once over all processes of the run (see the module docstring); one process: as usual.

    Must be called by every process, with the same data set and rewriter options. Each process gets the
    same patched set (in memory; the main process stores the cache entry), or every process reads the
    cache when each of them finds the entry.

    Args:
        dataset: A ``datasets.Dataset`` in a format the rewriter reads.
        rewriter: The rewriter (its ``batch_size`` is the map batch size and the shard unit).
        cache_dir: Cache folder; None for the default.
        use_cache: Read and write the cache.
        desc: Progress bar description.

    Returns:
        A :class:`~hf_patchdist.rewriter.cache.PatchResult`, the same on every process.
    """
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list, gather_object

    state = PartialState()
    if state.num_processes < 2:
        return patch_with_cache(dataset, rewriter, cache_dir=cache_dir, use_cache=use_cache, desc=desc)
    rewriter = _on_process_device(rewriter, state.device)

    # The main process's key of the whole set, on every process.
    fingerprint = rewriter.fingerprint()
    fingerprint, key = broadcast_object_list([fingerprint, patch_cache_key(dataset, rewriter, fingerprint)])
    path = (Path(cache_dir) if cache_dir is not None else default_patch_cache_dir()) / key
    if use_cache:
        # Read the cache only when every process can: a cache folder that is not shared must not split them.
        cached = load_cached(path)
        if all(gather_object([cached is not None])):
            return PatchResult.of(cached, key, path, True, fingerprint)

    start, stop = shard_bounds(len(dataset), rewriter.batch_size, state.num_processes, state.process_index)
    rows: list[dict[str, Any]] = []
    if stop > start:
        shard = rewriter.rewrite(
            dataset.select(range(start, stop)),
            new_fingerprint=f"{key}-rows-{start}-{stop}",
            keep_in_memory=True,
            load_from_cache_file=False,
            desc=f"{desc} (rows {start}-{stop - 1} on process {state.process_index})",
        )
        rows = shard.select_columns(_rewritten_columns(dataset, shard, rewriter)).to_list()
    outputs = gather_object(rows)
    if len(outputs) != len(dataset):
        raise RuntimeError(f"The processes returned {len(outputs)} patched rows for a data set of {len(dataset)}.")
    columns = list(outputs[0])  # a process without rows cannot tell which columns the rewriter writes

    def fill(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        return {column: [outputs[i][column] for i in indices] for column in columns}

    patched = dataset.map(
        fill,
        with_indices=True,
        batched=True,
        batch_size=max(rewriter.batch_size, 1),
        new_fingerprint=key,
        keep_in_memory=True,
        load_from_cache_file=False,
        desc="Gathering the patched rows",
    )
    statistics = PatchStatistics.from_dataset(patched)
    stored = None
    if use_cache:
        stored = path
        if state.is_main_process:
            store_patched(patched, dataset, rewriter, key=key, fingerprint=fingerprint, path=path, statistics=statistics)
    logger.info("Patched %d rows on %d processes (rows %d-%d here)", len(dataset), state.num_processes, start, stop - 1)
    return PatchResult(patched, statistics, key, stored, False, fingerprint)


def _rewritten_columns(dataset: Any, patched: Any, rewriter: Rewriter) -> list[str]:
    """The columns the rewriter wrote: the target column, then the new ones (provenance, ``patch_rejected``...)."""
    spec = rewriter.detect(dataset.column_names, sample=dataset[0])
    written = (*PATCH_COLUMNS, REJECTED_COLUMN)  # also when the input already had them
    return [spec.answer_column, *(c for c in patched.column_names if c not in dataset.column_names or c in written)]


def _on_process_device(rewriter: Rewriter, device: Any) -> Rewriter:
    """A copy that loads its model onto this process's GPU, when it loads by name with no device chosen.

    Without it, every process would load its copy onto the default GPU (``cuda`` is ``cuda:0``).
    """
    if getattr(device, "type", "cpu") == "cpu" or rewriter.device is not None or rewriter._model_source is None:
        return rewriter
    clone = copy.copy(rewriter)
    clone.device = str(device)
    return clone
