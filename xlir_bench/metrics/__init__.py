"""Exact ranking measures over the full candidate pool, plus language-bias measures.

``MEASURES`` maps the names used in results and tables to measure objects; each lives in its own module.
"""

from __future__ import annotations

from .ap import AP
from .base import Measure
from .ndcg import NDCG
from .ranks import descending_id_order, pad_relevant, relevant_ranks, top_1, top_k
from .recall import Recall
from .rr import RR

MEASURES: dict[str, Measure] = {m.name: m for m in (AP(), Recall(1), Recall(10), Recall(100), NDCG(10), RR())}


def compute_all(ranks, gains) -> dict:
    """Every measure in :data:`MEASURES` for a block of queries: name -> (B,) array."""
    return {name: measure.compute(ranks, gains) for name, measure in MEASURES.items()}


__all__ = [
    "MEASURES",
    "Measure",
    "compute_all",
    "descending_id_order",
    "pad_relevant",
    "relevant_ranks",
    "top_1",
    "top_k",
]
