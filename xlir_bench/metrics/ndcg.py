"""nDCG at a cutoff with linear gains (trec_eval ``ndcg_cut_k``; ir-measures ``nDCG@k``)."""

from __future__ import annotations

import numpy as np

from .base import Measure


class NDCG(Measure):
    """DCG@k = sum over relevant docs ranked <= k of gain / log2(rank + 1); divided by the ideal DCG@k."""

    def __init__(self, cutoff: int) -> None:
        self.cutoff = cutoff
        self.name = f"nDCG@{cutoff}"
        self.ir_measures_name = f"nDCG@{cutoff}"

    def compute(self, ranks: np.ndarray, gains: np.ndarray) -> np.ndarray:
        inside = (ranks <= self.cutoff) & (gains > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            dcg = np.where(inside, gains / np.log2(ranks + 1), 0.0).sum(axis=1)
        ideal_gains = -np.sort(-gains, axis=1)[:, : self.cutoff]
        discounts = 1.0 / np.log2(np.arange(2, ideal_gains.shape[1] + 2))
        idcg = (ideal_gains * discounts).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return dcg / idcg
