"""Average precision over the full candidate pool (trec_eval ``map``; ir-measures ``AP``)."""

from __future__ import annotations

import numpy as np

from .base import Measure, n_relevant, sort_by_rank


class AP(Measure):
    """AP = (1/R) * sum_i i / rank_i over the R relevant docs sorted by rank. Nothing is cut off."""

    name = "mAP"
    ir_measures_name = "AP"

    def compute(self, ranks: np.ndarray, gains: np.ndarray) -> np.ndarray:
        ranks, gains = sort_by_rank(ranks, gains)
        position = np.cumsum(gains > 0, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(gains > 0, position / ranks, 0.0)
            return precision.sum(axis=1) / n_relevant(gains)
