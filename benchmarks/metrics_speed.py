"""Exact full-pool metrics vs ir-measures (pytrec_eval) on the XQuAD-R multilingual setting.

Embeddings are fixed and random (d=384, seed 0): documents are Gaussian, each query is the mean of its relevant
documents plus noise, so that relevant documents rank high but not perfectly. xlir-bench's time covers the whole
multilingual evaluation (scoring matmul, exact ranks of every relevant doc in the 13,014-candidate pool, all
measures, bias). ir-measures is timed two ways: its measure computation alone on a prebuilt top-1000 run, and the
pipeline a user of it runs from the same embeddings (scores, top-1000 with the same tie rule, the run dict, the
measures). The headline ratio is against that pipeline, since the run cannot be skipped; the measure-only ratio
is printed too. Values are compared where both are defined: R@1, R@10, nDCG@10 for every query; AP and RR where
every relevant doc (AP) or the first one (RR) lies in the top 1000.

Usage: XLIR_BENCH_DATA=../shared/data python benchmarks/metrics_speed.py
Last line: speedup_vs_ir_measures=<x> max_abs_diff=<d> vs_matmul=<exact evaluation time / bare score matmul time>
"""

from __future__ import annotations

import os
import time

import ir_measures
import numpy as np

from xlir_bench import metrics, suites
from xlir_bench.evaluate import Evaluator

DIM, NOISE, DEPTH = 384, 1.6, 1000


class FixedEmbeddings:
    """A ScoreSource stand-in: scores are the matmul of fixed random embeddings."""

    def __init__(self, data) -> None:
        rng = np.random.default_rng(0)
        self.d = rng.standard_normal((len(data.docs), DIM)).astype(np.float32)
        q = np.stack([self.d[rel].mean(axis=0) for rel in data.rel_docs])
        q += NOISE * rng.standard_normal(q.shape).astype(np.float32) / np.sqrt(DIM / 8)
        self.d /= np.linalg.norm(self.d, axis=1, keepdims=True)
        self.q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
        self.all = np.arange(len(data.docs))

    def pool(self, name):
        return self.all

    def scores(self, idx, pool, language):
        return self.q[idx] @ self.d.T


def main() -> None:
    data = suites.load("xquad-r", os.environ.get("XLIR_BENCH_DATA"))
    source = FixedEmbeddings(data)

    start = time.perf_counter()
    evaluator = Evaluator(source, data)
    ours = evaluator.multilingual()
    ours_s = time.perf_counter() - start
    per_query = {}
    for lang in data.languages:
        block = evaluator.run_block(data.query_ids_in(lang), "all", lang, "")
        for q, ap, r1, r10, nd, rr, ranks in zip(
            block.query_idx,
            block.values["mAP"],
            block.values["R@1"],
            block.values["R@10"],
            block.values["nDCG@10"],
            block.values["MRR"],
            block.ranks,
        ):
            worst = ranks[np.isfinite(ranks)].max()
            per_query[data.queries[q].query_id] = (ap, r1, r10, nd, rr, worst, ranks.min())

    # The equivalent top-1000 run for ir-measures.
    build_start = time.perf_counter()
    doc_ids = [d.doc_id for d in data.docs]
    tiebreak = metrics.descending_id_order(doc_ids)
    run: dict[str, dict[str, float]] = {}
    for lo in range(0, len(data.queries), 256):
        idx = np.arange(lo, min(lo + 256, len(data.queries)))
        scores = source.scores(idx, "all", "")
        top = metrics.top_k(scores, DEPTH, tiebreak)
        for row, q in enumerate(idx):
            run[data.queries[q].query_id] = {doc_ids[j]: float(scores[row, j]) for j in top[row]}
    qrels = {q.query_id: {doc_ids[i]: 1 for i in data.rel_docs[k]} for k, q in enumerate(data.queries)}
    build_s = time.perf_counter() - build_start
    measures = [ir_measures.AP, ir_measures.R @ 1, ir_measures.R @ 10, ir_measures.nDCG @ 10, ir_measures.RR]
    start = time.perf_counter()
    theirs: dict[str, dict] = {}
    for m in ir_measures.pytrec_eval.iter_calc(measures, qrels, run):
        theirs.setdefault(m.query_id, {})[str(m.measure)] = m.value
    theirs_s = time.perf_counter() - start

    diffs, ap_compared, rr_compared = [], 0, 0
    for qid, (ap, r1, r10, nd, rr, worst, best) in per_query.items():
        t = theirs[qid]
        diffs += [abs(r1 - t["R@1"]), abs(r10 - t["R@10"]), abs(nd - t["nDCG@10"])]
        if worst <= DEPTH:
            diffs.append(abs(ap - t["AP"]))
            ap_compared += 1
        if best <= DEPTH:
            diffs.append(abs(rr - t["RR"]))
            rr_compared += 1
    print(f"queries={len(data.queries)} pool={len(data.docs)} dim={DIM}")
    print(f"xlir-bench multilingual evaluation (exact, full pool): {ours_s:.2f}s  mAP={ours['metrics']['mAP']:.4f}")
    print(f"ir-measures pytrec_eval on a prebuilt top-{DEPTH} run: {theirs_s:.2f}s (speedup {theirs_s / ours_s:.1f}x)")
    print(f"building that run from the embeddings: {build_s:.2f}s")
    print(f"compared: R@1/R@10/nDCG@10 on all queries, AP on {ap_compared}, RR on {rr_compared}")
    matmul_s = min(bare_matmul(source) for _ in range(2))
    print(f"bare score matmul (13,090 x 13,014 x {DIM}, float32): {matmul_s:.2f}s")
    print(
        f"speedup_vs_ir_measures={(build_s + theirs_s) / ours_s:.1f} max_abs_diff={max(diffs):.2e} "
        f"vs_matmul={ours_s / matmul_s:.2f}"
    )


def bare_matmul(source: FixedEmbeddings) -> float:
    """The scoring matmul alone, in the evaluator's blocks (the floor any exact evaluation pays)."""
    start = time.perf_counter()
    for lo in range(0, len(source.q), 2048):
        source.q[lo : lo + 2048] @ source.d.T
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
