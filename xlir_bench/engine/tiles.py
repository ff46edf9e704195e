"""Score tiles (queries x passages): numpy on CPU, torch on a CUDA device, and the per-pool targets folded from them.

A tile is scored once and every pool that holds its passages takes its own rows from it (a :class:`Target` per
pool): the monolingual, cross-lingual and multilingual pools of one corpus share one matrix product.
"""

from __future__ import annotations

import functools
import queue
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from ..fileio import usable_cores
from ..metrics.stream import StreamState, _down32, _up32

TILE_ROWS, TILE_COLS = 1024, 8192  # dense score tiles (queries x passages) on CPU
SLOT_PASSES_MAX = 8  # device tiles: up to this many relevant slots per row, one comparison pass per slot
CUDA_TILE_ROWS, CUDA_TILE_COLS = 4096, 32768  # on a GPU: 512 MiB of scores (and 1 GiB of bucket indices) per tile


@dataclass
class Target:
    """One pool's rows of one tile, with its thresholds taken when the tile was handed out.

    ``rows`` index the pool's state (its own queries); ``qrows`` are the same queries' global rows (the query
    vectors), which the canonical recomputation reads.

    The thresholds are a snapshot: a tile may be scored (in a worker thread) while earlier tiles are still being
    folded into the state. That is safe because thresholds only rise: an older one lets more candidates through,
    never fewer, and :meth:`StreamState.update` treats every candidate exactly.
    """

    state: StreamState
    rows: np.ndarray
    qrows: np.ndarray
    keep: np.ndarray
    eps: np.ndarray
    count_thr: np.ndarray
    topk_thr: np.ndarray
    short: np.ndarray | None

    @classmethod
    def of(cls, state: StreamState, rows: np.ndarray, qrows: np.ndarray, keep: np.ndarray, eps: np.ndarray) -> Target:
        return cls(state, rows, qrows, keep, eps, state.count_threshold(rows, eps), state.topk_threshold(rows, eps),
                   state.short_rows(rows))  # fmt: skip

    def find(self, tile) -> tuple:
        """(top-k threshold, certain counts or None, candidates) of this target's rows in ``tile``: touches no
        shared state, so it can run in a worker thread."""
        part = tile if self.keep.all() else tile.subset(self.keep)
        topk_thr, k = self.topk_thr, self.state.k
        if self.short is not None and self.short.any() and part.n_cols > k:
            # rows with fewer than k pool entries: k passages of this block have fast scores >= its k-th
            topk_thr = topk_thr.copy()
            kth = part.kth(k)[self.short]
            topk_thr[self.short] = np.maximum(topk_thr[self.short], kth - 2 * self.eps[self.short])
        if isinstance(part, DeviceTile) and self.state.valid[self.rows].any():
            # on the device: certain counts per relevant passage, and only the error-band and top-k candidates back
            rel = self.state.rel_scores[self.rows]
            counted, cand = part.split(rel + self.eps[:, None], rel - self.eps[:, None], topk_thr)
            return topk_thr, counted, cand, False
        if isinstance(part, HostTile) and part.ids is not None:  # exact scores: every count decided here
            counted = part.exact_counts(self.state.rel_scores[self.rows], self.state.rel_ids[self.rows])
            return topk_thr, counted, part.candidates(topk_thr), True
        return topk_thr, None, part.candidates(np.minimum(self.count_thr, topk_thr)), False

    def apply(self, found: tuple, ids, canonical, source: int, col0: int) -> None:
        """Fold what :meth:`find` returned into the state (main thread)."""
        topk_thr, counted, (cand_row, cand_col, cand_score), resolved = found
        refs = (np.int64(source) << 32) | (cand_col + col0)
        self.state.update(self.rows, cand_row, cand_col, cand_score, self.eps, topk_thr, ids, canonical, refs,
                          counted, resolved)  # fmt: skip


def process(state: StreamState, rows, tile, eps: np.ndarray, ids, canonical, source: int, col0: int) -> None:
    """One block scored in the calling thread: thresholds, the candidates above them, the exact update."""
    target = Target.of(state, rows, rows, np.ones(len(rows), dtype=bool), eps)
    target.apply(target.find(tile), ids, canonical, source, col0)


class HostTile:
    """A block of scores in host memory (numpy). With ``ids`` (the columns' pool ids) its scores are exact (a
    retriever's): :meth:`exact_counts` then decides every comparison with the relevant passages on the matrix."""

    def __init__(self, scores: np.ndarray, ids: np.ndarray | None = None) -> None:
        self.scores = scores
        self.n_cols = scores.shape[1]
        self.ids = ids

    def subset(self, keep: np.ndarray) -> HostTile:
        return HostTile(self.scores[keep], self.ids)

    def exact_counts(self, rel: np.ndarray, rel_ids: np.ndarray) -> np.ndarray:
        """(rows, slots) number of passages that beat each relevant one under the tie rule: a higher score, or the
        same score and a larger id (:meth:`StreamState._count`'s rule). Done on the dense matrix, one pass per slot:
        handed over as candidates, the ties would be most of the matrix (BM25 scores most passages of a query 0),
        and resolving them one by one made BM25's scoring 10x slower than its index."""
        order = np.argsort(self.ids, kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        sorted_ids = self.ids[order]
        counts = np.zeros(rel.shape, dtype=np.int64)
        for j in range(rel.shape[1]):
            ok = ~np.isnan(rel[:, j])
            if not ok.any():
                continue
            r = np.where(ok, rel[:, j], np.inf).astype(self.scores.dtype)[:, None]  # exact: taken from these scores
            after = np.searchsorted(sorted_ids, rel_ids[:, j], side="right")[:, None]  # ranks >= after: larger ids
            beats = np.count_nonzero(self.scores > r, axis=1)
            beats += np.count_nonzero((self.scores == r) & (rank[None, :] >= after), axis=1)
            counts[:, j] = np.where(ok, beats, 0)
        return counts

    def kth(self, k: int) -> np.ndarray:
        """Each row's k-th largest score."""
        return np.partition(self.scores, self.n_cols - k, axis=1)[:, self.n_cols - k].astype(np.float64)

    def candidates(self, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, score as float64) of the entries >= their row's threshold, in row-major order."""
        if self.scores.dtype == np.float32:
            thr = _down32(thr).astype(np.float32)  # same selection as the float64 comparison, at float32 speed
        flat = np.flatnonzero(self.scores >= thr[:, None])  # 1-d: far cheaper than a 2-d nonzero
        row, col = np.divmod(flat, self.n_cols)
        return row, col, self.scores.reshape(-1)[flat].astype(np.float64)


class DeviceTile:
    """A block of float32 scores on a torch device: thresholds go to the device, only candidates come back."""

    def __init__(self, scores) -> None:
        self.scores = scores
        self.n_cols = scores.shape[1]

    def subset(self, keep: np.ndarray) -> DeviceTile:
        import torch

        return DeviceTile(self.scores[torch.from_numpy(np.flatnonzero(keep)).to(self.scores.device)])

    def kth(self, k: int) -> np.ndarray:
        return self.scores.topk(k, dim=1).values[:, -1].double().cpu().numpy()

    def candidates(self, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._fetch(self.scores >= self._f32(_down32(thr))[:, None])

    def split(self, hi: np.ndarray, lo: np.ndarray, topk_thr: np.ndarray):
        """(counts, candidates): per row and relevant slot the number of scores above ``hi`` (certain wins), and the
        entries that are either at least the ``lo`` of a slot they do not certainly beat, or >= ``topk_thr``."""
        hi32 = np.where(np.isnan(hi), np.inf, _up32(hi))  # smallest float32 > hi: F > hi  <=>  F >= hi32
        lo32 = np.where(np.isnan(lo), np.inf, _down32(np.nan_to_num(lo, nan=np.inf)))
        mask = self.scores >= self._f32(_down32(topk_thr))[:, None]
        count = self._split_per_slot if hi32.shape[1] <= SLOT_PASSES_MAX else self._split_sorted
        return count(hi32, lo32, mask), self._fetch(mask)  # count() adds the error-band entries to mask

    def _split_per_slot(self, hi32: np.ndarray, lo32: np.ndarray, mask):
        """One comparison pass per slot: no atomics (3-4x the sorted variant's speed for 2 slots on an H200)."""
        import torch

        hi, lo = self._f32(hi32), self._f32(lo32)
        counts = torch.empty(hi.shape, dtype=torch.int64, device=self.scores.device)
        for j in range(hi.shape[1]):
            beats = self.scores >= hi[:, j : j + 1]
            counts[:, j] = beats.sum(1)
            mask |= ~beats & (self.scores >= lo[:, j : j + 1])
        return counts.cpu().numpy()

    def _split_sorted(self, hi32: np.ndarray, lo32: np.ndarray, mask):
        """Many slots: one ``searchsorted`` of every score into its row's sorted ``hi`` values, then a
        ``scatter_add`` of the buckets (its adds pile onto few counters, but it reads the tile once)."""
        import torch

        order = np.argsort(hi32, axis=1, kind="stable")  # one eps per row: lo sorts the same way
        hs, ls = np.take_along_axis(hi32, order, 1), np.take_along_axis(lo32, order, 1)
        width = hs.shape[1]
        bucket = torch.searchsorted(self._f32(hs), self.scores, right=True)  # slots (sorted) each score beats
        n = torch.zeros((len(hs), width + 1), dtype=torch.int64, device=self.scores.device)
        n.scatter_add_(1, bucket, torch.ones_like(bucket))
        beats_sorted = n.flip(1).cumsum(1).flip(1)[:, 1:].cpu().numpy()  # scores >= hs[:, j]
        counts = np.zeros_like(beats_sorted)
        np.put_along_axis(counts, order, beats_sorted, 1)
        inside = bucket < width  # scores that do not certainly beat every relevant passage
        low = torch.gather(self._f32(ls), 1, bucket.clamp_(max=width - 1))
        mask |= inside & (self.scores >= low)
        return counts

    def _f32(self, x: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.scores.device)

    def _fetch(self, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flat = mask.view(-1).nonzero().squeeze(1)
        values = self.scores.view(-1)[flat].double().cpu().numpy()
        row, col = np.divmod(flat.cpu().numpy(), self.n_cols)
        return row, col, values


class TileScorer:
    """Score tiles of (queries x passages): numpy on CPU, torch on a CUDA device (queries and shard resident)."""

    def __init__(self, q: np.ndarray, device: str, on_torch: bool | None = None, workers: int | None = None) -> None:
        self.q, self.device = q, device
        self.workers = workers or cpu_workers()
        self._stack: ExitStack | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.cuda = device.startswith("cuda") if on_torch is None else on_torch
        self.rows, self.cols = (CUDA_TILE_ROWS, CUDA_TILE_COLS) if device.startswith("cuda") else (TILE_ROWS, TILE_COLS)
        self.q_dev = None
        if self.cuda:
            import torch

            torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would break the float32 error bound
            self.q_dev = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)).to(device)

    def __enter__(self) -> TileScorer:
        """On CPU with several workers: the worker threads, and BLAS single-threaded, for the whole scoring pass
        (not per shard: starting threads and changing BLAS threads cost tens of ms each)."""
        if not self.cuda and self.workers > 1:
            self._stack = ExitStack()
            self._stack.enter_context(_threadpools().limit(limits=1, user_api="blas"))  # workers are the parallelism
            self._pool = self._stack.enter_context(ThreadPoolExecutor(max_workers=self.workers))
        return self

    def __exit__(self, *exc) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = self._pool = None

    def map(self, vectors: np.ndarray, union: np.ndarray, prepare: Callable[[np.ndarray], list[Target]]):
        """Yield (first column, host vectors, targets, what each target found) over a shard, tile by tile in order.

        ``prepare(query rows)`` is called in this thread when a tile is handed out. On CUDA the shard is copied to
        the device once and tiles are scored one after another. On CPU, tiles are scored by ``workers`` threads,
        each with a single-threaded BLAS, while this thread folds finished tiles into the state: the threshold
        pass and the bookkeeping then overlap the matrix products instead of leaving cores idle between them.
        """
        if self.cuda:
            yield from self._device_map(vectors, union, prepare)
            return
        blocks = [union[lo : lo + self.rows] for lo in range(0, len(union), self.rows)]
        q_blocks = [self.q[b] for b in blocks]
        jobs = [(c0, at) for c0 in range(0, len(vectors), self.cols) for at in range(len(blocks))]
        shape = (min(len(union), self.rows), min(len(vectors), self.cols))
        buffers: queue.SimpleQueue = queue.SimpleQueue()  # one tile buffer per worker: no page faults per tile
        for _ in range(self.workers):
            buffers.put(np.empty(shape, dtype=np.float32))

        def score(c0: int, at: int, targets: list[Target]) -> list:
            vecs = vectors[c0 : c0 + self.cols]
            buffer = buffers.get()
            try:
                out = buffer.reshape(-1)[: len(blocks[at]) * len(vecs)].reshape(len(blocks[at]), len(vecs))
                tile = HostTile(np.matmul(q_blocks[at], vecs.T, out=out))
                return [t.find(tile) for t in targets]
            finally:
                buffers.put(buffer)

        if self._pool is None:  # one worker, or used outside `with`: tiles in this thread
            for c0, at in jobs:
                targets = prepare(blocks[at])
                yield c0, vectors[c0 : c0 + self.cols], targets, score(c0, at, targets)
            return
        pending: deque = deque()
        for c0, at in jobs:
            targets = prepare(blocks[at])
            pending.append((c0, targets, self._pool.submit(score, c0, at, targets)))
            if len(pending) > self.workers:
                c0_done, t_done, future = pending.popleft()
                yield c0_done, vectors[c0_done : c0_done + self.cols], t_done, future.result()
        while pending:
            c0_done, t_done, future = pending.popleft()
            yield c0_done, vectors[c0_done : c0_done + self.cols], t_done, future.result()

    def _device_map(self, vectors: np.ndarray, union: np.ndarray, prepare):
        import torch

        with torch.no_grad():
            v_dev = torch.from_numpy(vectors).to(self.device)
            for c0 in range(0, len(vectors), self.cols):
                vt = v_dev[c0 : c0 + self.cols].T
                for lo in range(0, len(union), self.rows):
                    block = union[lo : lo + self.rows]
                    tile = DeviceTile(self.q_dev[torch.from_numpy(block).to(self.device)] @ vt)
                    targets = prepare(block)
                    yield c0, vectors[c0 : c0 + self.cols], targets, [t.find(tile) for t in targets]


@functools.cache
def _threadpools():
    """The process's thread pools (BLAS among them), found once: scanning the loaded libraries costs ~50 ms."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def cpu_workers() -> int:
    """Tile workers on CPU: the cores this process may use (at most 16: the main thread folds every tile)."""
    return max(1, min(16, usable_cores()))
