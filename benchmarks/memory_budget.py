"""Peak memory of a MIRACL-style run against the budget docs/suites.md states for it.

A generated corpus (the deterministic vectors of ``corpus_scale.py``, here at d=1,024, the width of the largest
built-in encoders, from a cosine model called like the built-in encoders, a whole shard per call, so that vectors
are handed over and normalised as a real encoder's are) goes through the
engine's whole MIRACL path in a fresh process per configuration: queries and shards encoded and stored, relevant
passages read, the exact pass with a saved run of depth 1,000 (``--run-depth 1000``, the deepest the CLI is usually
asked for), 500 queries. Each child reports its peak resident memory (``ru_maxrss``: the memory-mapped shard pages it
touched count too, as a user's monitor shows them). The encoder itself costs nothing here; a real model's weights
and activations come on top of the harness's budget.

Configurations: the default shard size (100,000 passages) on 200,000 and 400,000 passages (the peak must not grow
with the corpus), and ``--shard-size 25000`` on 200,000.

Usage: python benchmarks/memory_budget.py [--dim 1024] [--queries 500] [--depth 1000]
Last line: peak_gib=<default shards> budget_gib=<stated> peak_vs_budget=<ratio> growth_400k_vs_200k=<ratio>
small_shards_gib=<25,000-passage shards> small_budget_gib=<stated>
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

BUDGET_GIB = 1.5  # the harness at d <= 1,024, default shards: docs/suites.md states it
SMALL_BUDGET_GIB = 0.6  # the same with --shard-size 25000


class WholeShards:
    """The synthetic encoder as the built-in encoders are called: a whole shard per call (``whole_shards``), one
    float32 array back, computed a block at a time so that its own temporaries stay small (a real model's
    activations are the model's memory, not the harness's)."""

    similarity = "cosine"
    metadata = {"name": "synthetic", "revision": "sin-whole-shards", "whole_shards": True}

    def __init__(self, query_vectors: dict, passage_vectors) -> None:
        self.query_vectors, self.passage_vectors = query_vectors, passage_vectors

    def encode_queries(self, texts, *, language, batch_size, progress=None):
        return np.stack([self.query_vectors[t] for t in texts])

    def encode_corpus(self, docs, *, language, batch_size, progress=None):
        ids = np.array([int(d["doc_id"][1:]) for d in docs])
        first = self.passage_vectors(ids[:1])
        out = np.empty((len(ids), first.shape[1]), dtype=np.float32)
        for lo in range(0, len(ids), 4096):
            out[lo : lo + 4096] = self.passage_vectors(ids[lo : lo + 4096])
            if progress is not None:
                progress(len(ids[lo : lo + 4096]))
        return out


def child(n: int, dim: int, shard: int, depth: int, queries: int) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    import corpus_scale

    corpus_scale.DIM, corpus_scale.QUERIES, corpus_scale.SHARD = dim, queries, shard
    from xlir_bench.plugins import LoadedModel, PluginInfo

    data, synthetic, _ = corpus_scale.build(n)
    plugin = WholeShards(synthetic.plugin.query_vectors, corpus_scale.passage_vectors)
    model = LoadedModel("synthetic", plugin, "dense", "cosine", PluginInfo("synthetic", "bench", "bench"))
    with tempfile.TemporaryDirectory() as cache:
        engine, root, identity = corpus_scale.engine_for(data, model, cache, run_depth=depth)
        engine.encode_queries(root, identity)
        store, shards = engine.encode_corpus("xx", root, identity)
        encoded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        stores = {"xx": (store, shards)}
        engine.score_dense(stores, engine.relevant_scores(stores))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"n": n, "shard": shard, "encode_gib": encoded, "peak_gib": peak}


def run(n: int, args, shard: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(n), str(shard), "--dim", str(args.dim),
                          "--queries", str(args.queries), "--depth", str(args.depth)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{n:,} passages, shards of {shard:,}, d={args.dim}, {args.queries} queries, run depth {args.depth}: "
          f"peak {result['peak_gib']:.2f} GiB (after encoding {result['encode_gib']:.2f} GiB)", flush=True)  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.dim, args.child[1], args.depth, args.queries)))
        return
    small = run(200_000, args, 100_000)
    large = run(400_000, args, 100_000)
    shards = run(200_000, args, 25_000)
    peak = max(small["peak_gib"], large["peak_gib"])
    print(f"peak_gib={peak:.2f} budget_gib={BUDGET_GIB} peak_vs_budget={peak / BUDGET_GIB:.2f} "
          f"growth_400k_vs_200k={large['peak_gib'] / small['peak_gib']:.2f} small_shards_gib={shards['peak_gib']:.2f} "
          f"small_budget_gib={SMALL_BUDGET_GIB}")  # fmt: skip


if __name__ == "__main__":
    main()
