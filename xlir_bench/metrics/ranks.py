"""Exact ranks of relevant documents in a score matrix held in memory, with trec_eval's tie rule.

The engine never materialises a score matrix (:mod:`xlir_bench.engine` counts what beats each relevant passage
over tiles); this module is the plain reference it is tested against, and what benchmarks use to build runs.

Tie rule (the one trec_eval, hence pytrec_eval and ir-measures, applies): documents are ordered by score,
descending; documents with *equal* scores are ordered by document id in *descending* string order. Every
function here takes a ``tiebreak`` array: ``tiebreak[j]`` is the position of doc ``j`` when the pool's doc ids
are sorted descending, so among equal scores the smaller ``tiebreak`` ranks first.
"""

from __future__ import annotations

import numpy as np


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


def relevant_ranks(scores: np.ndarray, rel: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """1-based ranks of the relevant docs ``rel`` (B, R; -1 = padding) in each row of ``scores`` (B, N): one plus
    the number of docs with a higher score, or an equal score and a smaller ``tiebreak``. Padding gets ``inf``.
    ``-0.0`` and ``0.0`` are equal, as floats are."""
    valid = rel >= 0
    safe = np.where(valid, rel, 0)
    s_rel = np.take_along_axis(scores, safe, axis=1)
    ranks = np.empty(rel.shape, dtype=np.float64)
    for r in range(rel.shape[1]):  # one pass over the rows per relevant slot keeps memory at B x N
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
            cand = np.flatnonzero(s >= s[part].min())  # every doc tied at the boundary competes for the last places
        else:
            cand = np.arange(n)
        out[row] = cand[np.lexsort((tiebreak[cand], -s[cand]))[:k]]
    return out


def top_1(scores: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """The rank-1 column per row under the trec_eval tie rule."""
    best = scores.max(axis=1, keepdims=True)
    return np.where(scores == best, tiebreak[None, :], np.iinfo(np.int64).max).argmin(axis=1)
