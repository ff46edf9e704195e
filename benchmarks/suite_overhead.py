"""How much an end-to-end ``xlir-bench run`` costs beyond the model's own forward passes, and what the cache saves.

1. The pure forward time: the same encoder object encodes every XQuAD-R query and candidate (the texts the run
   encodes, with the same prefixes and batch size) in one call per kind and language, nothing else.
2. ``xlir-bench run --model M --suite xquad-r`` end to end with an empty embedding cache (process start, data
   loading, encoding, writing the cache, exact evaluation of all three settings, result writing), timed as a
   subprocess. Writing the cache is included, so the overhead is an upper bound for ``--no-cache`` runs.
3. The same run again: every vector comes from the cache.

overhead_fraction = (first run - forward) / forward; cache_speedup = first run / cached re-run.

Usage: XLIR_BENCH_DATA=../shared/data python benchmarks/suite_overhead.py [--model e5-small] [--batch-size 64]
Last line: overhead_fraction=<x> cache_speedup=<y>
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from xlir_bench import suites
from xlir_bench.engine.data import doc_item as doc_dict
from xlir_bench.plugins import load_model


def timed_run(model: str, batch_size: int, results: str, env: dict, *extra: str) -> float:
    cmd = [sys.executable, "-m", "xlir_bench.cli", "run", "--model", model, "--suite", "xquad-r", "--quiet"]
    cmd += ["--batch-size", str(batch_size), "--results-dir", results, *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="e5-small")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    data = suites.load("xquad-r", os.environ.get("XLIR_BENCH_DATA"))
    model = load_model(args.model, device="cpu")

    start = time.perf_counter()
    for lang in data.languages:
        queries = [data.queries[i].text for i in data.query_ids_in(lang)]
        docs = [doc_dict(data.docs[i]) for i in data.doc_ids_in(lang)]
        model.plugin.encode_queries(queries, language=lang, batch_size=args.batch_size)
        model.plugin.encode_corpus(docs, language=lang, batch_size=args.batch_size)
    forward = time.perf_counter() - start
    print(f"model={args.model} texts={len(data.queries) + len(data.docs)} pure forward: {forward:.1f}s")

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "XLIR_BENCH_CACHE": os.path.join(tmp, "cache")}
        results = os.path.join(tmp, "results")
        uncached = timed_run(args.model, args.batch_size, results, env)
        print(f"end-to-end run, empty cache: {uncached:.1f}s")
        cached = timed_run(args.model, args.batch_size, results, env)
        print(f"cached re-run: {cached:.1f}s")
    print(f"overhead_fraction={(uncached - forward) / forward:.3f} cache_speedup={uncached / cached:.1f}")


if __name__ == "__main__":
    main()
