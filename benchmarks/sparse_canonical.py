"""Exact scoring of a sparse encoder: canonical scores summed where the query is non-zero, against the full sum.

hashgram (the example third-party plugin, ``plugins/xlir-bench-hashgram``) gives hashed character n-gram vectors,
d=1,024, about 90% zeros, with very few distinct scores: most candidates fall inside a relevant passage's float32
error band and are recomputed canonically (:func:`xlir_bench.metrics.stream.canonical_pairs`). Its vectors for
XQuAD-R are encoded once and handed to the engine by a plugin object, so what is timed is the whole exact
evaluation (all three settings) minus the model, once with the sparse path (the default) and once with the full
d-long sum (``SPARSE_SHARE = 0``), taking turns, best of ``--rounds``; the two must give the same result to the
last bit, which is checked.

Usage: XLIR_BENCH_DATA=../shared/data python benchmarks/sparse_canonical.py [--rounds 2]
Last line: sparse_vs_full_sum=<full-sum seconds / sparse seconds> sparse_s=<s> full_sum_s=<s> identical=<bool>
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from xlir_bench import suites
from xlir_bench.metrics import stream
from xlir_bench.plugins import from_object, load_model
from xlir_bench.runner import evaluate


class Stored:
    """A plugin object handing out vectors encoded once: by doc id for candidates, in query order for queries."""

    similarity = "cosine"

    def __init__(self, data, plugin) -> None:
        rows: dict[str, np.ndarray] = {}
        self.doc_row: dict[str, int] = {}
        vectors = []
        for lang in data.languages:
            docs = [{"text": d.text, "title": d.title, "context": d.context, "language": d.language,
                     "doc_id": d.doc_id} for d in data.docs if d.language == lang]  # fmt: skip
            for doc in docs:
                self.doc_row[doc["doc_id"]] = len(self.doc_row)
            vectors.append(np.asarray(plugin.encode_corpus(docs, language=lang, batch_size=256), dtype=np.float32))
            ids = list(data.query_ids_in(lang))
            texts = [data.queries[i].text for i in ids]
            rows[lang] = np.asarray(plugin.encode_queries(texts, language=lang, batch_size=256), dtype=np.float32)
        self.d = np.concatenate(vectors)
        self.q = rows
        self.served = dict.fromkeys(rows, 0)
        self.metadata = {"name": "hashgram-stored", "dimension": int(self.d.shape[1])}

    def encode_queries(self, texts, *, language, batch_size):
        at = self.served[language]
        self.served[language] = at + len(texts)
        return self.q[language][at : at + len(texts)]

    def encode_corpus(self, docs, *, language, batch_size):
        return self.d[[self.doc_row[doc["doc_id"]] for doc in docs]]


def timed(source, data, share: float) -> tuple[float, dict]:
    stream.SPARSE_SHARE = share
    source.served = dict.fromkeys(source.served, 0)
    model = from_object(source, "hashgram-stored", "benchmarks.sparse_canonical:Stored")
    start = time.perf_counter()
    result, _ = evaluate(model, data, device="cpu", batch_size=256, use_cache=False)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data = suites.load("xquad-r", os.environ.get("XLIR_BENCH_DATA"))
    plugin = load_model("hashgram", device="cpu").plugin
    source = Stored(data, plugin)
    zeros = float((source.d == 0).mean())
    print(f"hashgram on XQuAD-R: {len(data.queries):,} queries, {len(data.docs):,} candidates, d={source.d.shape[1]}, "
          f"{100 * zeros:.1f}% zeros in candidate vectors")  # fmt: skip
    default = stream.SPARSE_SHARE
    best = {"sparse": float("inf"), "full": float("inf")}
    outputs = {}
    for r in range(args.rounds):
        for name, share in (("sparse", default), ("full", 0.0)):
            seconds, result = timed(source, data, share)
            best[name] = min(best[name], seconds)
            outputs[name] = (result["settings"], result["per_query"])
            mean_ap = result["settings"]["multilingual"]["metrics"]["mAP"]
            print(f"round {r + 1}: {name} sum {seconds:.2f} s (multilingual mAP {mean_ap:.4f})")
    stream.SPARSE_SHARE = default
    identical = outputs["sparse"] == outputs["full"]
    print(f"sparse_vs_full_sum={best['full'] / best['sparse']:.2f} sparse_s={best['sparse']:.2f} "
          f"full_sum_s={best['full']:.2f} identical={identical}")  # fmt: skip


if __name__ == "__main__":
    main()
