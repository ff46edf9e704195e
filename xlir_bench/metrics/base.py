"""The measure abstraction: a measure turns the ranks of a query's relevant documents into one number."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Measure(ABC):
    """A ranking measure computed from exact ranks.

    ``ranks`` (B, R) holds the 1-based ranks of each query's relevant docs (``inf`` = padding), ``gains`` (B, R)
    their relevance grades (0 = padding). Every relevant doc of the pool is ranked, so measures are exact.
    ``ir_measures_name`` is the equivalent ir-measures measure, which the tests compare against.
    """

    name: str
    ir_measures_name: str

    @abstractmethod
    def compute(self, ranks: np.ndarray, gains: np.ndarray) -> np.ndarray:
        """One value per query (B,)."""


def sort_by_rank(ranks: np.ndarray, gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(ranks, axis=1, kind="stable")
    return np.take_along_axis(ranks, order, axis=1), np.take_along_axis(gains, order, axis=1)


def n_relevant(gains: np.ndarray) -> np.ndarray:
    return np.count_nonzero(gains > 0, axis=1)
