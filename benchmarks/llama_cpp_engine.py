"""llama.cpp as a batched CPU engine for ``benchmarks/cpu_engines.py``: parallel sequences in one context.

The high-level ``llama_cpp.Llama`` class decodes one sequence at a time; here the low-level API runs
every candidate of a chunk of prompts as its own sequence of one context (``n_seq_max`` sequences,
unified KV cache): one ``llama_decode`` per step over all unfinished sequences, each prompt
prefilled once into its first candidate's sequence and copied to the others with
``llama_memory_seq_cp`` (in a unified cache the copy shares the cells: the prompt is stored once).
Greedy and temperature sampling are done in numpy on the returned logits.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np


MAX_SEQUENCES = 256  # LLAMA_MAX_SEQ of llama.cpp


class LlamaCppEngine:
    def __init__(self, gguf_path: str, threads: int, batch_size: int) -> None:
        import llama_cpp

        self.llama_cpp = llama_cpp
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(gguf_path.encode(), params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {gguf_path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.threads = threads
        self.batch_size = batch_size
        self.n_batch = 2048
        self.rng = np.random.default_rng(0)

    def _context(self, n_ctx: int, n_seq: int) -> Any:
        lc = self.llama_cpp
        params = lc.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = self.n_batch
        params.n_ubatch = 512
        params.n_seq_max = n_seq
        params.kv_unified = True
        params.n_threads = self.threads
        params.n_threads_batch = self.threads
        ctx = lc.llama_init_from_model(self.model, params)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not make a context of {n_ctx} tokens, {n_seq} sequences")
        return ctx

    def _pick(self, logits: np.ndarray, sample: bool) -> list[int]:
        """One token per row of ``logits``: argmax, or a sample at temperature 1 (Gumbel-max trick)."""
        if sample:
            logits = logits - np.log(-np.log(self.rng.random(logits.shape, dtype=np.float32)))
        return np.argmax(logits, axis=-1).tolist()

    def run(self, prompts, ids, limits, k, sample, finisher, seed):
        self.rng = np.random.default_rng(seed)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        per_chunk = max(1, min(self.batch_size, MAX_SEQUENCES // k))
        out: list[list[Any]] = [[] for _ in ids]
        for start in range(0, len(order), per_chunk):
            chunk = order[start : start + per_chunk]
            rows = self._run_chunk([ids[i] for i in chunk], [limits[i] for i in chunk], k, sample, finisher)
            for position, index in enumerate(chunk):
                out[index] = [finisher.cut(tokens, limits[index]) for tokens in rows[position * k : (position + 1) * k]]
        return out

    def _run_chunk(self, prompt_ids, limits, k, sample, finisher) -> list[list[int]]:
        lc = self.llama_cpp
        n_seq = len(prompt_ids) * k
        n_ctx = sum(len(p) for p in prompt_ids) + k * sum(limits) + 256
        n_ctx = (n_ctx + 255) // 256 * 256
        ctx = self._context(n_ctx, n_seq)
        memory = lc.llama_get_memory(ctx)
        batch = lc.llama_batch_init(max(self.n_batch, n_seq), 0, 1)
        try:
            # Prefill: the prompts back to back in batches of n_batch tokens, logits at each prompt's last token.
            first_logits: list[np.ndarray | None] = [None] * len(prompt_ids)
            pending: list[tuple[int, int, int]] = []  # (prompt, seq, position)
            for p, tokens in enumerate(prompt_ids):
                pending.extend((p, p * k, pos) for pos in range(len(tokens)))
            for begin in range(0, len(pending), self.n_batch):
                piece = pending[begin : begin + self.n_batch]
                wanted = []
                for j, (p, seq, pos) in enumerate(piece):
                    last = pos == len(prompt_ids[p]) - 1
                    self._set(batch, j, prompt_ids[p][pos], pos, seq, last)
                    if last:
                        wanted.append(p)
                batch.n_tokens = len(piece)
                if lc.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed during prefill")
                if wanted:
                    logits = self._logits(ctx, len(wanted))
                    for row, p in enumerate(wanted):
                        first_logits[p] = logits[row].copy()
            for p in range(len(prompt_ids)):
                for c in range(1, k):
                    lc.llama_memory_seq_cp(memory, p * k, p * k + c, -1, -1)
            tokens: list[list[int]] = [[] for _ in range(n_seq)]
            active = []
            firsts = self._pick(np.stack([first_logits[seq // k] for seq in range(n_seq)]), sample)
            for seq in range(n_seq):
                p = seq // k
                tokens[seq].append(firsts[seq])
                if not (finisher.done(tokens[seq]) or len(tokens[seq]) >= limits[p]):
                    active.append(seq)
            while active:
                for j, seq in enumerate(active):
                    p = seq // k
                    self._set(batch, j, tokens[seq][-1], len(prompt_ids[p]) + len(tokens[seq]) - 1, seq, True)
                batch.n_tokens = len(active)
                if lc.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed during decoding")
                picked = self._pick(self._logits(ctx, len(active)), sample)
                still = []
                for j, seq in enumerate(active):
                    p = seq // k
                    tokens[seq].append(picked[j])
                    if finisher.done(tokens[seq]) or len(tokens[seq]) >= limits[p]:
                        lc.llama_memory_seq_rm(memory, seq, -1, -1)
                    else:
                        still.append(seq)
                active = still
            return tokens
        finally:
            lc.llama_batch_free(batch)
            lc.llama_free(ctx)

    @staticmethod
    def _set(batch: Any, j: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch.token[j] = token
        batch.pos[j] = pos
        batch.n_seq_id[j] = 1
        batch.seq_id[j][0] = seq
        batch.logits[j] = logits

    def _logits(self, ctx: Any, rows: int) -> np.ndarray:
        pointer = self.llama_cpp.llama_get_logits(ctx)
        array = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(rows, self.n_vocab))
        return array
