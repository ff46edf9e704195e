"""Language-bias measures for the multilingual setting, where every relevant doc's language is known.

* ``rank_distance``: per query, max rank - min rank of its relevant candidates (0 when all parallel answers sit
  together; large when the model ranks same-language answers far above translations). Lower = less biased.
* ``lang_pref@1``: 1 when the query's best-ranked relevant candidate is in the query's own language. Its mean is
  the share of such queries; a language-agnostic model scores about 1/L with L parallel answers per query.
* top-1 split: the rank-1 candidate is relevant or not, and in the query's language or not.
"""

from __future__ import annotations

import numpy as np


def rank_distance(ranks: np.ndarray) -> np.ndarray:
    finite = np.isfinite(ranks)
    hi = np.where(finite, ranks, -np.inf).max(axis=1)
    lo = np.where(finite, ranks, np.inf).min(axis=1)
    return hi - lo


def prefers_own_language(ranks: np.ndarray, rel_lang: np.ndarray, query_lang: np.ndarray) -> np.ndarray:
    best = np.argmin(ranks, axis=1)
    return (rel_lang[np.arange(len(ranks)), best] == query_lang).astype(np.float64)


TOP1_CELLS = ("relevant_same", "relevant_other", "irrelevant_same", "irrelevant_other")


def top1_cells(is_relevant: np.ndarray, same_language: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query indicators of the four top-1 cells (each query falls in exactly one)."""
    rel, same = is_relevant.astype(bool), same_language.astype(bool)
    return {
        "relevant_same": (rel & same).astype(np.float64),
        "relevant_other": (rel & ~same).astype(np.float64),
        "irrelevant_same": (~rel & same).astype(np.float64),
        "irrelevant_other": (~rel & ~same).astype(np.float64),
    }
