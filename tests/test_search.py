"""faiss top-k is exact under the trec_eval tie rule, including tie groups wider than its margin."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")

from xlir_bench.metrics import descending_id_order, top_k  # noqa: E402
from xlir_bench.search import MARGIN, InnerProductIndex  # noqa: E402


@pytest.mark.parametrize("levels", [3, 50, 1000])
def test_faiss_top_k_equals_exact_ranking(levels):
    rng = np.random.default_rng(levels)
    docs = rng.integers(-levels, levels + 1, size=(3000, 4)).astype(np.float32)  # integer scores: many ties
    queries = rng.integers(-2, 3, size=(40, 4)).astype(np.float32)
    key = descending_id_order([f"d{rng.integers(1e9)}-{i}" for i in range(len(docs))])
    ids, scores = InnerProductIndex(docs, key).search(queries, 25)
    expected = top_k(queries @ docs.T, 25, key)
    assert np.array_equal(ids, expected)
    np.testing.assert_array_equal(scores, np.take_along_axis(queries @ docs.T, expected, axis=1))


def test_tie_group_wider_than_margin_falls_back_to_exact():
    docs = np.ones((MARGIN * 4, 2), dtype=np.float32)  # every doc ties
    key = descending_id_order([f"d{i:04d}" for i in range(len(docs))])
    ids, _ = InnerProductIndex(docs, key).search(np.ones((1, 2), dtype=np.float32), 10)
    assert ids[0].tolist() == list(range(len(docs) - 1, len(docs) - 11, -1))  # largest ids first
