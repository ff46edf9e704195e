"""Exact ranks over a corpus that arrives in shards: count, for every relevant passage, what beats it.

The rank of a relevant passage ``r`` for query ``q`` is one plus the number of passages that beat it under the
trec_eval rule (higher score first, equal scores by doc id descending). That count is a sum over shards, so a
corpus of any size is ranked exactly in one streaming pass whose memory does not grow with the corpus; a running
top-k per query (merged shard by shard) serves saved runs and the top-k bias measures.

**Which score.** Scores are float32, as trec_eval holds them (its ``sim`` is a C float, so scores that differ
only below float32 precision are tied there and ordered by doc id). A float32 matrix product rounds differently
with the shape of the call (BLAS kernels, GPU split-K), so the score of one (query, passage) pair is not a function
of the pair alone, and a relevant passage's score taken from one call may tie or not tie a duplicate scored in
another. The *canonical* score is therefore the float64 sum of the exact float64 products, accumulated in
dimension order and rounded once to float32 (:func:`canonical_scores`): a function of the two vectors only. The fast
matrix product differs from it by at most
``eps = gamma(d) * |q| * |v|`` (the worst-case error of any float32 summation order, ``gamma(d) = (d+2)u/(1-(d+2)u)``,
``u = 2**-24``), so a passage whose fast score is above ``canonical(r) + eps`` certainly beats ``r``, one below
``canonical(r) - eps`` certainly does not, and only the few inside the band are recomputed canonically and compared
with the tie rule. For a score matrix that a plugin returns itself (BM25), its values are canonical and ``eps = 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..fileio import usable_cores

UNIT = 2.0**-24
CANDIDATE_CHUNK = 1 << 20  # candidate entries handled at once (bounds memory for weak models with many candidates)
CANONICAL_ELEMENTS = 1 << 19  # float64 products per canonical chunk (4 MiB: the chunk's accumulators stay in cache)
PARALLEL_CHUNKS = 8  # canonical calls of at least this many chunks run on a thread pool
SPARSE_SHARE = 0.25  # query vectors with at most this share of non-zero entries are summed where they are non-zero
COMPACT_MIN = 1 << 16  # top-k pool entries before the first size-triggered compaction
TIED_POOL_FACTOR, TIED_POOL_MIN = 4, 256  # a row's pool beyond max(4k, k + 256) entries is decided exactly


def error_bound(dim: int) -> float:
    """gamma(d) with slack: bounds |fast float32 dot - canonical| / (|q| |v|) for any summation order."""
    n = (dim + 2) * UNIT
    return 1.0001 * n / (1.0 - n)


def canonical_scores(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise dot products of (M, d) float32 arrays: float64 sums in dimension order, rounded to float32.

    Each product of two float32 values is exact in float64 and the order of the sum is fixed, so the result depends
    on the two vectors alone (not on the batch, the device or the BLAS), which is what makes ties well defined.
    Returned as float64 holding float32 values.
    """
    return canonical_pairs(q, np.arange(len(q)), v, np.arange(len(v)))


def canonical_pairs(q: np.ndarray, q_rows: np.ndarray, v: np.ndarray, v_rows: np.ndarray) -> np.ndarray:
    """:func:`canonical_scores` of the pairs ``(q[q_rows[i]], v[v_rows[i]])``, gathered chunk by chunk.

    The ordered sum is ``np.add.accumulate`` down the dimension axis of a chunk laid out dimension-major (d x pairs):
    an accumulation is sequential by definition (unlike ``sum``, which adds pairwise), and this layout makes each
    of its d steps one vectorised add across the chunk's pairs instead of a d-long dependency chain per pair (the
    same additions in the same order). Gathering a chunk just before its products keeps it in cache; large calls
    spread their chunks over the cores (numpy releases the GIL), small ones (the most) run inline, since a pool per
    call cost more than their products. ``+ 0.0`` turns an all-negative-zero sum into +0.0, as a sum started from
    0.0 gives.
    """
    out = np.empty(len(q_rows), dtype=np.float64)
    if q.shape[1] and len(q_rows) and _sparse_enough(q, q_rows):
        _sparse_pairs(q, q_rows, v, v_rows, out)
        return out.astype(np.float32).astype(np.float64)
    width = max(1, CANONICAL_ELEMENTS // max(1, q.shape[1]))

    def chunk(lo: int) -> None:
        a = q[q_rows[lo : lo + width]].T.astype(np.float64)  # (d, pairs): float32 -> float64 is exact
        products = np.multiply(a, v[v_rows[lo : lo + width]].T, dtype=np.float64)  # exact products
        np.add.accumulate(products, axis=0, out=products)
        np.add(products[-1], 0.0, out=out[lo : lo + width])

    starts = range(0, len(q_rows), width)
    if q.shape[1] == 0:
        out[:] = 0.0
    elif len(starts) >= PARALLEL_CHUNKS and usable_cores() > 1:  # large calls only: starting threads has a cost
        with ThreadPoolExecutor(max_workers=min(len(starts), usable_cores())) as pool:
            list(pool.map(chunk, starts))
    else:
        for lo in starts:
            chunk(lo)
    return out.astype(np.float32).astype(np.float64)


def _sparse_enough(q: np.ndarray, q_rows: np.ndarray) -> bool:
    """Whether the query vectors of these pairs are mostly zeros (hashed n-grams, a vocabulary-sized sparse
    encoder): then :func:`_sparse_pairs` does a fraction of the work, with the same result. Judged on up to 32 of
    them, so that a dense model's calls pay almost nothing for the question (either path gives the same bits)."""
    sample = q_rows[np.linspace(0, len(q_rows) - 1, min(32, len(q_rows))).astype(np.intp)]
    return bool(np.count_nonzero(q[sample]) <= SPARSE_SHARE * q.shape[1] * len(sample))


def _sparse_pairs(q: np.ndarray, q_rows: np.ndarray, v: np.ndarray, v_rows: np.ndarray, out: np.ndarray) -> None:
    """:func:`canonical_pairs` summing only where the query vector is non-zero.

    The same value to the last bit: a left-out product is a zero, and adding a zero to a partial sum leaves it as it
    is, except that it can turn a -0.0 partial sum into +0.0, which only matters when the whole sum is zero, and
    then the final ``+ 0.0`` makes it +0.0 on both paths (``tests/test_metrics_exact.py`` checks it on vectors with
    negative zeros, subnormals and cancellations). Each pair takes its query's non-zero dimensions in order, padded
    at the end to the longest such list with products of zero (which change nothing, as above), so that a chunk of
    pairs is one (dimensions x pairs) accumulation, as on the dense path."""
    rows, inverse = np.unique(q_rows, return_inverse=True)
    at_row, at_dim = np.nonzero(q[rows])  # by row, then dimension: each row's non-zero dimensions in order
    counts = np.bincount(at_row, minlength=len(rows))
    longest = int(counts.max()) if len(at_row) else 0
    if longest == 0:
        out[:] = 0.0
        return
    slot = np.arange(len(at_row)) - (np.cumsum(counts) - counts)[at_row]
    dims = np.zeros((len(rows), longest), dtype=np.intp)  # padding: dimension 0, with a query value of zero
    values = np.zeros((len(rows), longest), dtype=np.float64)
    dims[at_row, slot] = at_dim
    values[at_row, slot] = q[rows[at_row], at_dim]  # float32 -> float64 is exact
    width = max(1, CANONICAL_ELEMENTS // longest)
    for lo in range(0, len(q_rows), width):
        u = inverse[lo : lo + width]
        picked = v[v_rows[lo : lo + width, None], dims[u]]  # (pairs, longest)
        products = np.multiply(values[u].T, picked.T, dtype=np.float64)  # exact products, (longest, pairs)
        np.add.accumulate(products, axis=0, out=products)
        np.add(products[-1], 0.0, out=out[lo : lo + width])


def _down32(x: np.ndarray) -> np.ndarray:
    """float32 values <= x (so that ``S >= _down32(t)`` keeps every float32 S >= t)."""
    x32 = x.astype(np.float32)
    return np.where(x32.astype(np.float64) > x, np.nextafter(x32, np.float32(-np.inf)), x32)


def _up32(x: np.ndarray) -> np.ndarray:
    """The smallest float32 values > x (so that ``S > x``  <=>  ``S >= _up32(x)`` for float32 S)."""
    x32 = x.astype(np.float32)
    return np.where(x32.astype(np.float64) <= x, np.nextafter(x32, np.float32(np.inf)), x32)


def _kth_largest_per_row(g: np.ndarray, values: np.ndarray, k: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows holding at least k entries, the k-th largest of their values), for entries labelled by row ``g``.

    Entries are laid out one row per line of a dense matrix (a stable sort by row; the pool arrives in runs already
    sorted by row, which the sort exploits) and ``np.partition`` finds each line's k-th in linear time: about 5x
    a full lexsort by (row, value). A very uneven pool (one row far longer than the others) takes the lexsort."""
    counts = np.bincount(g, minlength=n_rows)
    rows = np.flatnonzero(counts >= k)
    if not len(rows):
        return rows, np.empty(0)
    sel = counts[g] >= k
    g, values, counts = g[sel], values[sel], counts[rows]
    width = int(counts.max())
    if len(rows) * width > 4 * len(g) + (1 << 20):
        order = np.lexsort((-values, g))  # by row, then value descending
        starts = np.cumsum(counts) - counts
        return rows, values[order][starts + k - 1]
    order = np.argsort(g, kind="stable")
    line = np.searchsorted(rows, g[order])
    starts = np.cumsum(counts) - counts
    dense = np.full((len(rows), width), -np.inf)
    dense[line, np.arange(len(g)) - starts[line]] = values[order]
    return rows, -np.partition(-dense, k - 1, axis=1)[:, k - 1]


class StreamState:
    """Running exact counts and top-k of one query set over the shards it is scored against.

    ``rel_ids`` (Q, R): ids of each query's relevant passages ('' = padding); ``rel_scores`` (Q, R): their canonical
    scores (NaN where the passage is absent from the corpus or padding). ``k``: top-k kept per query (0: none).

    **Top-k without canonical scores in the loop.** While streaming, the top-k is a *pool* of candidates known only
    by their fast scores ``F`` and error bounds ``e`` (their canonical score lies in ``[F - e, F + e]``) and a
    reference (an int64 the caller decodes). A candidate is dropped only when k pool entries beat it for certain:
    its upper bound ``F + e`` is below the k-th largest lower bound ``F - e`` of the row. Canonical scores and ids
    are resolved once, in :meth:`finalize`, for the few survivors (about k per query), instead of for every passage
    that briefly entered a running top-k.
    """

    def __init__(self, rel_ids: np.ndarray, rel_scores: np.ndarray, k: int) -> None:
        self.rel_ids = rel_ids
        self.rel_scores = rel_scores
        self.valid = ~np.isnan(rel_scores)
        n, width = rel_ids.shape
        self.counts = np.zeros((n, width), dtype=np.int64)
        self.k = k
        self.top_scores = np.full((n, k), -np.inf)
        self.top_ids = np.full((n, k), "", dtype=rel_ids.dtype if rel_ids.dtype.kind == "U" else "<U1")
        self.top_n = np.zeros(n, dtype=np.int64)
        self.rel_min = np.where(self.valid, rel_scores, np.inf).min(axis=1)
        # the pool: parallel arrays (row, fast score, error bound, reference), appended in parts, compacted lazily
        self.pool_count = np.zeros(n, dtype=np.int64)
        self.lower_kth = np.full(n, -np.inf)  # k-th largest lower bound per row (as of the last compaction)
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._pool_size = 0
        self._compact_at = COMPACT_MIN
        # (pool rows, references, fast scores) -> (canonical scores, ids): set by the engine, so that crowded pools of
        # tied entries can be decided exactly during the stream (see :meth:`_resolve_crowded`)
        self.resolver: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None

    def set_relevant(self, rows: np.ndarray, scores: np.ndarray) -> None:
        """Relevant scores known only per block (a retriever's score matrix holds them)."""
        self.rel_scores[rows] = scores
        self.valid[rows] = ~np.isnan(scores)
        self.rel_min[rows] = np.where(self.valid[rows], scores, np.inf).min(axis=1)

    # -- thresholds -----------------------------------------------------------------------------------------
    def count_threshold(self, rows: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """Fast scores below this cannot beat any relevant passage of the row."""
        return self.rel_min[rows] - eps

    def short_rows(self, rows: np.ndarray) -> np.ndarray | None:
        """Rows whose pool holds fewer than k entries (a block's own k-th score bounds them); None without top-k."""
        return self.pool_count[rows] < self.k if self.k else None

    def topk_threshold(self, rows: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """Fast scores below this cannot enter the row's top-k: k pool entries beat them for certain.

        Thresholds only rise as the stream goes on, so one taken earlier is still safe later (it lets more through).
        """
        if self.k == 0:
            return np.full(len(rows), np.inf)
        return self.lower_kth[rows] - eps

    # -- update ---------------------------------------------------------------------------------------------
    def update(
        self,
        rows: np.ndarray,
        cand_row: np.ndarray,
        cand_col: np.ndarray,
        cand_score: np.ndarray,
        eps: np.ndarray,
        topk_thr: np.ndarray,
        ids: np.ndarray,
        canonical: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
        refs: np.ndarray | None = None,
        counted: np.ndarray | None = None,
        resolved: bool = False,
    ) -> None:
        """Fold one block's candidates into the counts and the top-k pool.

        ``rows``: global query indices of the block; ``cand_row`` (M,) positions into ``rows``; ``cand_col`` (M,)
        passage positions in the block; ``cand_score`` (M,) fast scores (float64); ``ids`` the block's ids;
        ``canonical(row_positions, cols)`` the canonical scores of pairs (None: fast scores are canonical);
        ``refs`` (M,) what :meth:`finalize` hands back to identify the candidates' passages; ``counted`` (rows, R)
        the certain wins already counted where the scores are (then only the error band is resolved here);
        ``resolved``: ``counted`` holds every win, ties included (exact scores), so the candidates only feed top-k.
        """
        if counted is not None:
            self.counts[rows] += counted
        for lo in range(0, 0 if resolved else len(cand_row), CANDIDATE_CHUNK):
            sl = slice(lo, lo + CANDIDATE_CHUNK)
            self._count(rows, cand_row[sl], cand_col[sl], cand_score[sl], eps, ids, canonical, counted is None)
        if self.k:
            keep = cand_score >= topk_thr[cand_row]
            if keep.any():
                r = cand_row[keep]
                g = rows[r]
                self._parts.append((g, cand_score[keep], eps[r], refs[keep]))
                self._pool_size += len(g)
                self.pool_count += np.bincount(g, minlength=len(self.pool_count))
                # compact when the pool has doubled, or when a row has just filled (its threshold is still -inf)
                filled = (self.pool_count[g] >= self.k) & np.isneginf(self.lower_kth[g])
                if self._pool_size >= self._compact_at or filled.any():
                    self.compact()
                    self._compact_at = max(COMPACT_MIN, 2 * self._pool_size)

    def _count(self, rows, cand_row, cand_col, s, eps, ids, canonical, add_certain: bool = True) -> None:
        """Certain wins counted per relevant slot; the candidates inside a slot's error band resolved exactly.

        One pass per slot over the candidates, each comparing against its row's bound gathered from a (rows,) array:
        no (candidates x slots) temporaries, which made this the largest cost after the matrix products."""
        rel = self.rel_scores[rows]  # (n, R); NaN (padding, absent passage) compares False everywhere
        width = rel.shape[1]
        band_m, band_slot = [], []
        with np.errstate(invalid="ignore"):
            for j in range(width):
                if np.isnan(rel[:, j]).all():
                    continue
                certain = s > (rel[:, j] + eps)[cand_row]
                if add_certain:
                    self.counts[rows, j] += np.bincount(cand_row[certain], minlength=len(rows))
                band = np.flatnonzero(~certain & (s >= (rel[:, j] - eps)[cand_row]))
                if len(band):
                    band_m.append(band)
                    band_slot.append(np.full(len(band), j))
        if not band_m:
            return
        band_m, band_slot = np.concatenate(band_m), np.concatenate(band_slot)
        if canonical is None:
            exact = s[band_m]
        else:  # a candidate in the band of several slots (parallel answers score alike) is recomputed once
            unique, back = np.unique(band_m, return_inverse=True)
            exact = canonical(cand_row[unique], cand_col[unique])[back]
        g = rows[cand_row[band_m]]
        target = self.rel_scores[g, band_slot]
        cand_ids = ids[cand_col[band_m]]
        rel_ids = self.rel_ids[g, band_slot]
        beats = (exact > target) | ((exact == target) & (cand_ids > rel_ids))
        np.add.at(self.counts, (g[beats], band_slot[beats]), 1)

    def compact(self) -> None:
        """Drop the pool entries that k others beat for certain, and raise each row's k-th lower bound."""
        if not self._parts:
            return
        g, fast, eps, refs = (np.concatenate(x) for x in zip(*self._parts))
        rows, kth = _kth_largest_per_row(g, fast - eps, self.k, len(self.pool_count))
        self.lower_kth[rows] = np.maximum(self.lower_kth[rows], kth)
        keep = fast + eps >= self.lower_kth[g]
        g, fast, eps, refs = g[keep], fast[keep], eps[keep], refs[keep]
        self.pool_count = np.bincount(g, minlength=len(self.pool_count))
        crowded = self.pool_count > max(TIED_POOL_FACTOR * self.k, self.k + TIED_POOL_MIN)
        if self.resolver is not None and crowded.any():  # ties the bounds cannot split: decide them exactly now
            g, fast, eps, refs = self._resolve_crowded(crowded, g, fast, eps, refs)
            self.pool_count = np.bincount(g, minlength=len(self.pool_count))
        self._parts = [(g, fast, eps, refs)]
        self._pool_size = len(g)

    def _resolve_crowded(self, crowded: np.ndarray, g, fast, eps, refs):
        """Rows whose pool the error bounds cannot shrink hold many entries tied with their k-th (a model whose
        scores all tie, all-zero vectors): their entries get canonical scores and ids from ``resolver`` and only
        the exact top k by (score, id) stay, as exact entries (eps 0). Later ties enter and are decided the same way,
        so the pool stays bounded by the rows' k, not by the corpus."""
        sel = crowded[g]
        rg, rrefs = g[sel], refs[sel]
        exact, ids = self.resolver(rg, rrefs, fast[sel])
        exact = np.asarray(exact, dtype=np.float64)
        order = np.lexsort((np.asarray(ids), exact, rg))  # by row, then ascending (score, id): best last
        rg, exact, rrefs = rg[order], exact[order], rrefs[order]
        ends = np.searchsorted(rg, rg, side="right")
        best = (ends - 1 - np.arange(len(rg))) < self.k  # the k last of each row's run
        rg, exact, rrefs = rg[best], exact[best], rrefs[best]
        rows, kth = _kth_largest_per_row(rg, exact, self.k, len(self.pool_count))
        self.lower_kth[rows] = np.maximum(self.lower_kth[rows], kth)
        return (np.concatenate([g[~sel], rg]), np.concatenate([fast[~sel], exact]),
                np.concatenate([eps[~sel], np.zeros(len(rg))]), np.concatenate([refs[~sel], rrefs]))  # fmt: skip

    def finalize(self, resolve: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> None:
        """Exact top-k from the pool: ``resolve(rows, refs, fast)`` gives the survivors' canonical scores and ids."""
        self.compact()
        if not self._parts or not self._pool_size:
            return
        g, fast, _, refs = self._parts[0]
        exact, ids = resolve(g, refs, fast)
        self._parts, self._pool_size = [], 0
        self._merge_topk(np.arange(len(self.top_n)), g, np.asarray(exact, dtype=np.float64), np.asarray(ids))

    def _merge_topk(self, rows, cand_row, exact, cand_ids) -> None:
        """Merge candidates into the running top-k: per query, score descending, then doc id descending."""
        g_new = rows[cand_row]
        touched = np.unique(g_new)
        old_pos = np.arange(self.k)[None, :] < self.top_n[touched][:, None]
        g_old = np.broadcast_to(touched[:, None], old_pos.shape)[old_pos]
        all_g = np.concatenate([g_old, g_new])
        all_s = np.concatenate([self.top_scores[touched][old_pos], exact])
        all_ids = np.concatenate([self.top_ids[touched][old_pos], cand_ids])  # promotes to the longer id width
        order = np.lexsort((all_ids, all_s, all_g))  # by query, then ascending (score, id): best last
        all_g, all_s, all_ids = all_g[order], all_s[order], all_ids[order]
        ends = np.searchsorted(all_g, touched, side="right")
        starts = np.searchsorted(all_g, touched, side="left")
        sizes = np.minimum(ends - starts, self.k)
        self.top_n[touched] = sizes
        self.top_scores[touched] = -np.inf
        if self.top_ids.dtype.itemsize < all_ids.dtype.itemsize:
            self.top_ids = self.top_ids.astype(all_ids.dtype)
        self.top_ids[touched] = ""
        group = np.repeat(np.arange(len(touched)), sizes)
        offset = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        source = np.repeat(ends, sizes) - 1 - offset
        self.top_scores[touched[group], offset] = all_s[source]
        self.top_ids[touched[group], offset] = all_ids[source]

    # -- results --------------------------------------------------------------------------------------------
    def ranks(self) -> np.ndarray:
        """(Q, R) 1-based ranks; inf for padding and for relevant passages absent from the corpus."""
        return np.where(self.valid, 1.0 + self.counts, np.inf)

    def merge(self, other: StreamState) -> None:
        """Add another rank's counts and top-k over disjoint shards (torchrun reduction)."""
        self.counts += other.counts
        if self.k:
            have = np.arange(self.k)[None, :] < other.top_n[:, None]
            rows = np.broadcast_to(np.arange(len(other.top_n))[:, None], have.shape)[have]
            if len(rows):
                self._merge_topk(np.arange(len(other.top_n)), rows, other.top_scores[have], other.top_ids[have])
