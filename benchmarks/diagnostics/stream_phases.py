"""Where the exact streaming pass spends its time: each phase timed (on a GPU with a device sync around it).

A diagnostic, not a benchmark (the timers and syncs slow the pass a little): corpus_scale's generated corpus,
scored twice (the second run has warm caches). ``ShardStore.read`` runs in the reader thread, overlapped with
scoring; the main thread's wait for it is the "read wait". On CPU, ``--workers 1`` scores every tile in the main
thread, so the phases add up to the work of the pass (the rest of the total is the matrix products).

Usage: python benchmarks/diagnostics/stream_phases.py [--passages 1000000] [--device cuda|cpu] [--workers N]
"""

from __future__ import annotations

import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import corpus_scale  # noqa: E402
import torch  # noqa: E402

from xlir_bench import shards  # noqa: E402
from xlir_bench.engine import core, tiles  # noqa: E402
from xlir_bench.metrics import stream  # noqa: E402

SECONDS: dict[str, float] = collections.defaultdict(float)
CALLS: collections.Counter = collections.Counter()
PHASES = [
    (shards.ShardStore, "read", False),
    (core.Engine, "relevant_scores", True),
    (tiles.DeviceTile, "split", True),
    (tiles.DeviceTile, "kth", True),
    (tiles.HostTile, "candidates", False),
    (tiles.HostTile, "kth", False),
    (stream.StreamState, "_count", False),
    (tiles.Target, "apply", True),
    (stream.StreamState, "compact", False),
    (stream.StreamState, "finalize", True),
    (core.Engine, "_resolve", False),
]


def timed(owner, name: str, sync: bool) -> None:
    inner, key = getattr(owner, name), f"{owner.__name__}.{name}"
    sync = sync and torch.cuda.is_available()

    def wrapper(*args, **kwargs):
        if sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            if sync:
                torch.cuda.synchronize()
            SECONDS[key] += time.perf_counter() - start
            CALLS[key] += 1

    setattr(owner, name, wrapper)


def main() -> None:
    def arg(name: str, default: str) -> str:
        return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default

    n, device = int(arg("--passages", "1000000")), arg("--device", "cuda")
    if "--workers" in sys.argv:
        original = tiles.TileScorer
        core.TileScorer = lambda q, dev: original(q, dev, workers=int(arg("--workers", "1")))
    for owner, name, sync in PHASES:
        timed(owner, name, sync)
    if device.startswith("cuda"):
        torch.zeros(1, device=device)
    with tempfile.TemporaryDirectory() as cache:
        data, model, _ = corpus_scale.build(n)
        ev, root, identity = corpus_scale.engine_for(data, model, cache, device, run_depth=100)
        ev.encode_queries(root, identity)
        stores = {"xx": ev.encode_corpus("xx", root, identity)}
        for run in range(2):
            SECONDS.clear()
            CALLS.clear()
            start = time.perf_counter()
            ev.score_dense(stores, ev.relevant_scores(stores))
            total = time.perf_counter() - start
            print(f"run {run}: total {total:.2f} s, read wait {ev.read_wait_seconds:.2f} s (cumulative)")
            for key, seconds in sorted(SECONDS.items(), key=lambda kv: -kv[1]):
                print(f"  {key:40s} {seconds:7.3f} s  ({CALLS[key]} calls)")


if __name__ == "__main__":
    main()
