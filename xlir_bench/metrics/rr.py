"""Reciprocal rank of the first relevant doc, no cutoff (trec_eval ``recip_rank``; ir-measures ``RR``)."""

from __future__ import annotations

import numpy as np

from .base import Measure


class RR(Measure):
    name = "MRR"
    ir_measures_name = "RR"

    def compute(self, ranks: np.ndarray, gains: np.ndarray) -> np.ndarray:
        first = np.where(gains > 0, ranks, np.inf).min(axis=1)
        return 1.0 / first
