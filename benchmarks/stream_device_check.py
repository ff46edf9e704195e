"""The streaming scorer on a GPU gives exactly what it gives on the CPU: ranks of every relevant passage and the
top-100 (ids and scores), on a generated corpus with heavy ties (vectors rounded to multiples of 1/8).

Both runs read the same shards; the CPU run uses numpy tiles, the GPU run device tiles (thresholds, certain
counts and candidate extraction on the device). Needs a CUDA GPU.

Usage: python benchmarks/stream_device_check.py [--passages 200000] [--device cuda]
Last line: identical=<True|False> cpu_s=<scoring seconds> device_s=<scoring seconds>
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus_scale  # noqa: E402


def rounded(x: np.ndarray) -> np.ndarray:
    return (np.round(x * 8) / 8).astype(np.float32)


def evaluate(n: int, cache: str, device: str):
    data, model, qvec = corpus_scale.build(n)
    model.plugin.query_vectors = {k: rounded(v) for k, v in model.plugin.query_vectors.items()}
    encode = model.plugin.encode_corpus
    model.plugin.encode_corpus = lambda docs, **kw: rounded(encode(docs, **kw))
    ev, root, identity = corpus_scale.engine_for(data, model, cache, device, run_depth=100)
    ev.encode_queries(root, identity)
    stores = {"xx": ev.encode_corpus("xx", root, identity)}
    start = time.perf_counter()
    ev.score_dense(stores, ev.relevant_scores(stores))
    seconds = time.perf_counter() - start
    return ev.states[0], seconds


def main() -> None:
    n = int(sys.argv[sys.argv.index("--passages") + 1]) if "--passages" in sys.argv else 200_000
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda"
    with tempfile.TemporaryDirectory(prefix="xlir-stream-check-") as cache:
        cpu, cpu_s = evaluate(n, cache, "cpu")
        evaluate(20_000, cache, device)  # warm-up: CUDA context, cuBLAS and every kernel loaded outside the timing
        dev, dev_s = evaluate(n, cache, device)
    same = (
        np.array_equal(cpu.counts, dev.counts)
        and np.array_equal(cpu.top_n, dev.top_n)
        and np.array_equal(cpu.top_ids, dev.top_ids)
        and np.array_equal(cpu.top_scores, dev.top_scores)
    )
    ties = int(sum(len(row) - len(set(row[np.isfinite(row)])) for row in cpu.top_scores))
    print(f"{n:,} passages, 1,000 queries: tied scores inside the top-100 lists: {ties:,}")
    print(f"identical={same} cpu_s={cpu_s:.2f} device_s={dev_s:.2f}")


if __name__ == "__main__":
    main()
