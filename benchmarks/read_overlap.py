"""Reading a MIRACL corpus while the device encodes: the engine's read-ahead against reading in turn.

A MIRACL-format corpus (``docs-*.jsonl.gz``: docid, title, text) of ``--passages`` Wikipedia paragraphs (those of
XQuAD-R and MLQA-R, repeated under distinct ids; MIRACL's length) goes through the engine's real corpus path
(read, ids checked, shards of 100,000 cut, encoded, normalised, stored) with a simulated device: the encoder waits
``batch / --device-rate`` seconds per batch of 256 passages without holding the GIL, as a GPU's kernels do, and
returns fixed vectors. Tokenization is left out (it runs on the feed's thread: ``encode_throughput.py``): this
times the reading alone against the device.

Peers, same corpus, same run, taking turns (best of ``--repeat``): ``in turn`` = ``READ_AHEAD_SHARDS = 0`` (read a
shard, then encode it: the engine before the read-ahead), ``read-ahead`` = the default (the next shard is read on a
thread while this one encodes). Device busy = the simulated device time / wall time.

Usage: XLIR_BENCH_DATA=../shared/data python benchmarks/read_overlap.py [--passages 300000] [--device-rate 20000]
Last line: read_ahead_vs_in_turn=<speed-up> device_busy=<read-ahead> device_busy_in_turn=<in turn> device_rate=<r>
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH = 256


class SimulatedDevice:
    """A whole-shard encoder whose forward is a GIL-free wait of ``rows / rate`` seconds per batch."""

    similarity = "cosine"
    metadata = {"name": "simulated-device", "revision": "wait", "whole_shards": True}

    def __init__(self, rate: float) -> None:
        self.rate, self.waited = rate, 0.0

    def encode_queries(self, texts, *, language, batch_size, progress=None):
        return np.ones((len(texts), 8), dtype=np.float32)

    def encode_corpus(self, docs, *, language, batch_size, progress=None):
        for lo in range(0, len(docs), BATCH):
            rows = min(BATCH, len(docs) - lo)
            time.sleep(rows / self.rate)
            self.waited += rows / self.rate
        return np.ones((len(docs), 8), dtype=np.float32)


def once(corpus_file: Path, rate: float, ahead: int) -> tuple[float, float]:
    """(wall seconds of the engine's corpus step, seconds the device was busy) with ``ahead`` shards read ahead."""
    from xlir_bench.engine import vectors
    from xlir_bench.engine.core import Engine
    from xlir_bench.engine.data import from_miracl
    from xlir_bench.plugins import LoadedModel, PluginInfo
    from xlir_bench.suites.miracl import Corpus, MiraclData, Topics
    from xlir_bench.suites.records import SuiteQuery

    device = SimulatedDevice(rate)
    model = LoadedModel("simulated", device, "dense", "cosine", PluginInfo("simulated", "bench", "bench"))
    topics = Topics("xx", [SuiteQuery("0", "q", "xx", "0")], {"0": {"xx-0#0": 1}})
    data = MiraclData("overlap", ["xx"], {"xx": topics}, {"xx": Corpus("xx", [corpus_file])})
    vectors.READ_AHEAD_SHARDS = ahead
    with tempfile.TemporaryDirectory() as cache:
        engine = Engine(model, from_miracl(data), settings=("monolingual",), batch_size=BATCH,
                        identity={"model": "simulated", "ahead": ahead}, cache_root=Path(cache))  # fmt: skip
        start = time.perf_counter()
        engine.encode_corpus("xx", Path(cache), {"model": "simulated", "ahead": ahead})
        return time.perf_counter() - start, device.waited


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passages", type=int, default=300_000)
    parser.add_argument("--device-rate", type=float, default=20_000.0, help="simulated passages/s of the device")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    import os

    from encode_throughput import write_corpus

    with tempfile.TemporaryDirectory() as tmp:
        path = write_corpus(Path(tmp), args.passages, os.environ.get("XLIR_BENCH_DATA"))
        best = {0: (float("inf"), 0.0), 1: (float("inf"), 0.0)}
        for _ in range(args.repeat):  # taking turns: a load change on a shared host moves both alike
            for ahead in (0, 1):
                wall, busy = once(path, args.device_rate, ahead)
                best[ahead] = min(best[ahead], (wall, busy))
    for ahead, label in ((0, "in turn"), (1, "read-ahead")):
        wall, busy = best[ahead]
        print(f"{label}: {args.passages:,} passages in {wall:.1f} s ({args.passages / wall:,.0f} passages/s), "
              f"device busy {busy / wall:.0%} (simulated device at {args.device_rate:,.0f} passages/s)")  # fmt: skip
    (serial, serial_busy), (ahead_wall, ahead_busy) = best[0], best[1]
    print(f"read_ahead_vs_in_turn={serial / ahead_wall:.2f} device_busy={ahead_busy / ahead_wall:.2f} "
          f"device_busy_in_turn={serial_busy / serial:.2f} device_rate={args.device_rate:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
