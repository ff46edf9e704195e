"""Recall at a cutoff (trec_eval ``recall_k``; ir-measures ``R@k``)."""

from __future__ import annotations

import numpy as np

from .base import Measure, n_relevant


class Recall(Measure):
    """R@k = |relevant docs ranked <= k| / |relevant docs|."""

    def __init__(self, cutoff: int) -> None:
        self.cutoff = cutoff
        self.name = f"R@{cutoff}"
        self.ir_measures_name = f"R@{cutoff}"

    def compute(self, ranks: np.ndarray, gains: np.ndarray) -> np.ndarray:
        hits = np.count_nonzero((ranks <= self.cutoff) & (gains > 0), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return hits / n_relevant(gains)
