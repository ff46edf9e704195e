"""Exact metrics agree with ir-measures' pytrec_eval provider on full runs, ties included."""

from __future__ import annotations

import ir_measures
import numpy as np
import pytest

from xlir_bench.metrics import (
    MEASURES,
    compute_all,
    descending_id_order,
    pad_relevant,
    relevant_ranks,
    top_1,
    top_k,
)


def ours(scores: np.ndarray, rel: list[np.ndarray], doc_ids: list[str], gains=None) -> dict[str, np.ndarray]:
    gains = gains or [np.ones(len(r)) for r in rel]
    padded, padded_gains = pad_relevant(rel, gains)
    ranks = relevant_ranks(scores, padded, descending_id_order(doc_ids))
    return compute_all(ranks, padded_gains)


def reference(scores, rel, doc_ids, gains=None) -> dict[str, dict[str, float]]:
    """Per-query values from pytrec_eval through ir-measures, on the complete run (every doc of the pool)."""
    gains = gains or [np.ones(len(r)) for r in rel]
    qrels = {f"q{i}": {doc_ids[j]: int(g) for j, g in zip(r, gs)} for i, (r, gs) in enumerate(zip(rel, gains))}
    run = {f"q{i}": {d: float(s) for d, s in zip(doc_ids, row)} for i, row in enumerate(scores)}
    measures = [ir_measures.parse_measure(m.ir_measures_name) for m in MEASURES.values()]
    out: dict[str, dict[str, float]] = {m.name: {} for m in MEASURES.values()}
    by_ir = {m.ir_measures_name: m.name for m in MEASURES.values()}
    for metric in ir_measures.pytrec_eval.iter_calc(measures, qrels, run):
        out[by_ir[str(metric.measure)]][metric.query_id] = metric.value
    return out


def assert_same(scores, rel, doc_ids, gains=None) -> None:
    got = ours(scores, rel, doc_ids, gains)
    want = reference(scores, rel, doc_ids, gains)
    for name, values in got.items():
        expected = np.array([want[name][f"q{i}"] for i in range(len(rel))])
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("seed", range(8))
def test_random_runs_with_heavy_ties(seed):
    rng = np.random.default_rng(seed)
    n_docs = int(rng.integers(5, 300))
    n_queries = int(rng.integers(1, 20))
    levels = int(rng.integers(2, 6))  # few distinct score values: most scores tie
    scores = rng.integers(0, levels, size=(n_queries, n_docs)).astype(np.float32)
    doc_ids = [f"d{int(x)}" for x in rng.permutation(n_docs * 3)[:n_docs]]  # ids not in pool order
    rel = [rng.choice(n_docs, size=int(rng.integers(1, min(12, n_docs) + 1)), replace=False) for _ in scores]
    assert_same(scores, rel, doc_ids)


@pytest.mark.parametrize("seed", range(4))
def test_random_continuous_scores_and_graded_gains(seed):
    rng = np.random.default_rng(100 + seed)
    scores = rng.standard_normal((15, 500)).astype(np.float32)
    doc_ids = [f"doc-{i:05d}" for i in range(500)]
    rel = [rng.choice(500, size=int(rng.integers(1, 30)), replace=False) for _ in scores]
    gains = [rng.integers(1, 4, size=len(r)).astype(float) for r in rel]
    assert_same(scores, rel, doc_ids, gains)


def test_tie_rule_is_descending_doc_id():
    # Three docs tie; trec_eval puts "c" before "b" before "a".
    scores = np.array([[1.0, 1.0, 1.0]], dtype=np.float32)
    ids = ["a", "b", "c"]
    ranks = relevant_ranks(scores, np.array([[0, 1, 2]]), descending_id_order(ids))
    assert ranks.tolist() == [[3.0, 2.0, 1.0]]
    assert top_1(scores, descending_id_order(ids)).tolist() == [2]
    assert top_k(scores, 2, descending_id_order(ids)).tolist() == [[2, 1]]


def test_top_k_matches_a_full_sort():
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 4, size=(6, 50)).astype(np.float64)
    key = descending_id_order([f"x{i:02d}" for i in range(50)])
    got = top_k(scores, 10, key)
    for row in range(6):
        full = sorted(range(50), key=lambda j: (-scores[row, j], key[j]))
        assert got[row].tolist() == full[:10]


def test_ap_by_hand():
    # relevant at ranks 1 and 3 of 4: AP = (1/1 + 2/3) / 2
    scores = np.array([[0.9, 0.8, 0.7, 0.1]])
    got = ours(scores, [np.array([0, 2])], ["a", "b", "c", "d"])
    assert got["mAP"][0] == pytest.approx((1 + 2 / 3) / 2, abs=1e-15)
    assert got["R@1"][0] == 0.5
    assert got["MRR"][0] == 1.0


def test_canonical_scores_are_sequential_float64_sums_of_the_two_vectors_alone(monkeypatch):
    """The canonical score is the float64 sum of exact products in dimension order, rounded once to float32: the
    same bits whatever the batch, the chunking or the threads (ties between passages scored in different tiles
    depend on it). Checked against a plain Python loop; all-negative-zero products give +0.0 as that loop does."""
    from xlir_bench.metrics import stream

    rng = np.random.default_rng(3)
    q = rng.standard_normal((37, 96)).astype(np.float32) * np.float32(1e3)
    v = rng.standard_normal((37, 96)).astype(np.float32)
    q[0], v[0] = -0.0, 1.0  # every product -0.0
    q[1], v[1] = 1.0, 1.0  # 1e30, 7 ones lost against it in order, -1e30, 87 ones: 87 (a pairwise sum gives 94)
    q[1, 0], v[1, 0], q[1, 8], v[1, 8] = 1e15, 1e15, -1e15, 1e15
    expected = []
    for a, b in zip(q.astype(np.float64), v.astype(np.float64)):
        acc = 0.0
        for x, y in zip(a, b):
            acc += x * y  # float64 products of float32 values are exact
        expected.append(float(np.float32(acc)))
    monkeypatch.setattr(stream, "CANONICAL_ELEMENTS", 5 * 96)  # chunks of 5 pairs: several, on a thread pool
    monkeypatch.setattr(stream, "PARALLEL_CHUNKS", 2)
    monkeypatch.setattr(stream, "usable_cores", lambda: 2)
    got = stream.canonical_scores(q, v)
    assert [float(x) for x in got] == expected
    assert np.signbit(got[0]) == np.False_
    alone = [stream.canonical_scores(q[i : i + 1], v[i : i + 1])[0] for i in range(len(q))]
    assert np.array_equal(alone, got)
    assert np.array_equal(stream.canonical_scores(q[:0], v[:0]), np.empty(0))


@pytest.mark.parametrize("seed", range(6))
def test_sparse_query_vectors_take_a_shorter_sum_with_the_same_bits(seed, monkeypatch):
    """Mostly-zero query vectors (hashed n-grams, vocabulary-sized sparse encoders) are summed only where they are
    non-zero: the same bits as the full ordered sum, on vectors with negative zeros, subnormals, huge and tiny
    magnitudes and exact cancellations, whatever the chunking; and that path is the one taken."""
    from xlir_bench.metrics import stream

    rng = np.random.default_rng(seed)
    d, n_q, n_v = int(rng.integers(8, 300)), 9, 40
    q = np.where(rng.random((n_q, d)) < 0.08, rng.standard_normal((n_q, d)), -0.0).astype(np.float32)
    v = np.where(rng.random((n_v, d)) < 0.3, rng.standard_normal((n_v, d)), -0.0).astype(np.float32)
    v *= np.float32(10.0) ** rng.integers(-38, 30, size=(n_v, 1)).astype(np.float32)  # 1e-38 is subnormal-close
    v[0] = -v[1]  # pairs that cancel to exactly zero against the same query
    q[0] = -0.0  # a query vector of negative zeros only: +0.0 everywhere
    q[1, : d // 2] = np.float32(1e-45)  # subnormal entries
    q_rows = rng.integers(0, n_q, size=500)
    v_rows = rng.integers(0, n_v, size=500)
    expected = []
    for i, j in zip(q_rows, v_rows):
        acc = 0.0
        for x, y in zip(q[i].astype(np.float64), v[j].astype(np.float64)):
            acc += x * y
        expected.append(np.float32(acc + 0.0))
    taken = []
    monkeypatch.setattr(stream, "_sparse_pairs", lambda *a, f=stream._sparse_pairs: taken.append(1) or f(*a))
    monkeypatch.setattr(stream, "CANONICAL_ELEMENTS", 3 * d)  # several chunks per query
    got = stream.canonical_pairs(q, q_rows, v, v_rows)
    assert taken and got.tobytes() == np.array(expected, dtype=np.float32).astype(np.float64).tobytes()
    monkeypatch.setattr(stream, "SPARSE_SHARE", 0.0)  # the full sum, for the same pairs: the same bits
    assert stream.canonical_pairs(q, q_rows, v, v_rows).tobytes() == got.tobytes() and len(taken) == 1
