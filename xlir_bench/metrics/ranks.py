"""Exact ranks of relevant documents in a full candidate pool, with trec_eval's tie rule.

Tie rule (the one trec_eval, hence pytrec_eval and ir-measures, applies): documents are ordered by score,
descending; documents with *equal* scores are ordered by document id in *descending* string order. Every
function here takes a ``tiebreak`` array: ``tiebreak[j]`` is the position of doc ``j`` when the pool's doc ids
are sorted descending, so among equal scores the smaller ``tiebreak`` ranks first. Only the relative order of
``tiebreak`` values matters, so the suite-wide key also serves any sub-pool.

No run is materialised: the rank of a relevant document is one plus the number of documents that beat it,
counted over the whole score row. That is exact for every document in the pool, not only a top-k.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..fileio import usable_cores


def descending_id_order(doc_ids: list[str]) -> np.ndarray:
    """``tiebreak`` for ``doc_ids``: 0 for the largest id, 1 for the next, ... (trec_eval's strcmp order)."""
    order = sorted(range(len(doc_ids)), key=doc_ids.__getitem__, reverse=True)
    key = np.empty(len(doc_ids), dtype=np.int64)
    key[order] = np.arange(len(doc_ids))
    return key


def pad_relevant(rel_docs: list[np.ndarray], rel_gains: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged relevant lists into (B, R) arrays: doc positions (-1 = padding) and gains (0 = padding)."""
    width = max((len(r) for r in rel_docs), default=0) or 1
    docs = np.full((len(rel_docs), width), -1, dtype=np.int64)
    gains = np.zeros((len(rel_docs), width), dtype=np.float64)
    for row, (d, g) in enumerate(zip(rel_docs, rel_gains)):
        docs[row, : len(d)] = d
        gains[row, : len(g)] = g
    return docs, gains


class _Workspace:
    """Scratch arrays reused across score blocks (one set per thread, see :func:`_workspace`).

    Fresh multi-megabyte temporaries cost a page fault per 4 KiB on first touch, which measured here was slower
    than the comparisons themselves; reusing one set of buffers removes that cost.
    """

    def __init__(self) -> None:
        self.capacity = 0
        self.keys = self.mask = self.f32 = self.i32 = np.empty(0)

    def get(self, shape: tuple[int, int]):
        size = shape[0] * shape[1]
        if size > self.capacity:
            self.capacity = size
            self.keys = np.empty(size, dtype=np.int64)
            self.mask = np.empty(size, dtype=bool)
            self.f32 = np.empty(size, dtype=np.float32)
            self.i32 = np.empty(size, dtype=np.int32)
        return tuple(buf[:size].reshape(shape) for buf in (self.keys, self.mask, self.f32, self.i32))


_LOCAL = threading.local()
_POOL: ThreadPoolExecutor | None = None
PARALLEL_MIN_ELEMENTS = 1 << 20  # below this, threads cost more than they save
WORKERS = usable_cores()


def _workspace() -> _Workspace:
    if not hasattr(_LOCAL, "workspace"):
        _LOCAL.workspace = _Workspace()
    return _LOCAL.workspace


def _pool() -> ThreadPoolExecutor:
    """Threads for row slices: numpy releases the GIL inside the comparison and counting loops."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="xlir-ranks")
    return _POOL


def _composite_keys(scores: np.ndarray, tiebreak: np.ndarray, keys: np.ndarray, f32: np.ndarray, i32: np.ndarray):
    """Fill ``keys`` with one int64 per float32 score ordering exactly like (score desc, tiebreak asc).

    The high 32 bits are the float's bits made monotone (negative floats get their magnitude bits flipped); the
    low 32 bits rank equal scores. Adding 0.0 turns -0.0 into +0.0 so the two zeros stay tied, as floats are.
    """
    np.add(scores, np.float32(0.0), out=f32)
    bits = f32.view(np.int32)
    np.right_shift(bits, 31, out=i32)
    np.bitwise_and(i32, np.int32(0x7FFFFFFF), out=i32)
    np.bitwise_xor(bits, i32, out=i32)
    np.copyto(keys, i32, casting="safe")
    np.left_shift(keys, 32, out=keys)
    np.add(keys, (np.int64(0xFFFFFFFF) - tiebreak.astype(np.int64))[None, :], out=keys)
    return keys


def relevant_ranks(scores: np.ndarray, rel: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """1-based ranks of the relevant docs ``rel`` (B, R; -1 = padding) in each row of ``scores`` (B, N).

    Padding gets rank ``inf``. ``tiebreak`` (N,) orders equal scores, see the module docstring. float32 scores
    (every dense encoder here) are ranked from the few candidates at or above each row's lowest relevant score
    (:func:`ranks_and_top1`); other dtypes take three comparison passes per relevant slot.
    Large blocks are split into row slices ranked on all cores.
    """
    return ranks_and_top1(scores, rel, tiebreak)[0]


def ranks_and_top1(scores: np.ndarray, rel: np.ndarray, tiebreak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranks as :func:`relevant_ranks`, rank-1 column per row as :func:`top_1`) in one pass over the scores."""
    workers = WORKERS
    if scores.size < PARALLEL_MIN_ELEMENTS or workers == 1 or len(scores) < 2 * workers:
        return _ranks_top1_rows(scores, rel, tiebreak)
    bounds = np.linspace(0, len(scores), workers + 1).astype(int)
    parts = [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    futures = [_pool().submit(_ranks_top1_rows, scores[lo:hi], rel[lo:hi], tiebreak) for lo, hi in parts]
    done = [f.result() for f in futures]
    return np.concatenate([r for r, _ in done]), np.concatenate([t for _, t in done])


def _ranks_top1_rows(scores: np.ndarray, rel: np.ndarray, tiebreak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if scores.dtype != np.float32 or len(tiebreak) >= 2**32 or scores.shape[1] == 0:
        return _ranks_rows(scores, rel, tiebreak), top_1(scores, tiebreak)
    return _threshold_ranks(scores, rel, tiebreak)


def _keys_1d(values: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """:func:`_composite_keys` for flat float32 ``values`` and their docs' ``tiebreak`` values."""
    bits = (values + np.float32(0.0)).view(np.int32)
    bits = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))
    return (bits.astype(np.int64) << 32) + (np.int64(0xFFFFFFFF) - tiebreak.astype(np.int64))


def _threshold_ranks(scores: np.ndarray, rel: np.ndarray, tiebreak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Only entries at or above a row's lowest relevant score can beat a relevant doc, and the row's best entry is
    always among them: one comparison pass over the block picks these candidates (few for a good model), and ranks
    and the top 1 are computed on the candidates alone. Rows without a relevant doc fall back to :func:`top_1`."""
    rows_n, width = rel.shape
    valid = rel >= 0
    safe = np.where(valid, rel, 0)
    rel_scores = np.take_along_axis(scores, safe, axis=1)
    low = np.where(valid, rel_scores, np.float32(np.inf)).min(axis=1)
    _, mask, _, _ = _workspace().get(scores.shape)
    np.greater_equal(scores, low[:, None], out=mask)
    flat = np.flatnonzero(mask)
    row, col = np.divmod(flat, scores.shape[1])
    keys = _keys_1d(scores.reshape(-1)[flat], tiebreak[col])
    rel_keys = _keys_1d(rel_scores.reshape(-1), tiebreak[safe.reshape(-1)]).reshape(rows_n, width)
    ranks = np.empty((rows_n, width), dtype=np.float64)
    for r in range(width):
        ranks[:, r] = 1 + np.bincount(row[keys > rel_keys[row, r]], minlength=rows_n)
    ranks[~valid] = np.inf
    top1 = np.empty(rows_n, dtype=np.int64)
    has = np.zeros(rows_n, dtype=bool)
    has[row] = True
    if len(flat):
        starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])  # row-major order: each row's run is contiguous
        best = np.maximum.reduceat(keys, starts)
        at = np.flatnonzero(keys == np.repeat(best, np.diff(np.r_[starts, len(keys)])))
        top1[row[at]] = col[at]
    if not has.all():
        top1[~has] = top_1(scores[~has], tiebreak)
    return ranks, top1


def _ranks_rows(scores: np.ndarray, rel: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    valid = rel >= 0
    safe = np.where(valid, rel, 0)
    ranks = np.empty(rel.shape, dtype=np.float64)
    if scores.dtype == np.float32 and len(tiebreak) < 2**32:
        keys, mask, f32, i32 = _workspace().get(scores.shape)
        _composite_keys(scores, tiebreak, keys, f32, i32)
        rel_keys = np.take_along_axis(keys, safe, axis=1)
        for r in range(rel.shape[1]):  # one pass over the rows per relevant slot keeps memory at B x N
            np.greater(keys, rel_keys[:, r : r + 1], out=mask)
            ranks[:, r] = 1 + np.count_nonzero(mask, axis=1)
    else:
        s_rel = np.take_along_axis(scores, safe, axis=1)
        for r in range(rel.shape[1]):
            threshold = s_rel[:, r : r + 1]
            beaten_in_tie = (scores == threshold) & (tiebreak[None, :] < tiebreak[safe[:, r]][:, None])
            ranks[:, r] = 1 + np.count_nonzero(scores > threshold, axis=1) + np.count_nonzero(beaten_in_tie, axis=1)
    ranks[~valid] = np.inf
    return ranks


def top_k(scores: np.ndarray, k: int, tiebreak: np.ndarray) -> np.ndarray:
    """Column indices of the best ``k`` docs per row, in rank order under the trec_eval tie rule."""
    n = scores.shape[1]
    k = min(k, n)
    out = np.empty((scores.shape[0], k), dtype=np.int64)
    for row in range(scores.shape[0]):
        s = scores[row]
        if k < n:
            part = np.argpartition(-s, k - 1)[:k]
            cut = s[part].min()
            cand = np.flatnonzero(s >= cut)  # every doc tied at the boundary competes for the last places
        else:
            cand = np.arange(n)
        order = np.lexsort((tiebreak[cand], -s[cand]))
        out[row] = cand[order[:k]]
    return out


def top_1(scores: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """The rank-1 column per row under the trec_eval tie rule."""
    best = scores.max(axis=1, keepdims=True)
    masked = np.where(scores == best, tiebreak[None, :], np.iinfo(np.int64).max)
    return masked.argmin(axis=1)
