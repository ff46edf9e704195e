"""``DeviceTile.split`` of two versions on one GPU tile: an older checkout's against this one's, identical outputs.

Usage: git archive <rev> xlir_bench | tar -x -C /tmp/old && python benchmarks/diagnostics/split_bench.py /tmp/old
(the 2026-11-26 log compared the searchsorted + scatter_add counting of e967c13^ with per-slot comparisons)
"""

from __future__ import annotations

import importlib
import sys
import time

import numpy as np
import torch

SHAPES = [(1000, 32768, 2), (1000, 32768, 8), (4096, 32768, 2), (4096, 32768, 32)]


def load_versions(old_root: str):
    sys.path.insert(0, old_root)
    old = importlib.import_module("xlir_bench.streaming")
    sys.path.pop(0)
    for name in [m for m in sys.modules if m.startswith("xlir_bench")]:
        del sys.modules[name]
    new = importlib.import_module("xlir_bench.streaming")
    assert old.__file__ != new.__file__
    return old, new


def main() -> None:
    old, new = load_versions(sys.argv[1])
    rng = np.random.default_rng(0)
    for rows, cols, width in SHAPES:
        scores = torch.from_numpy(rng.standard_normal((rows, cols)).astype(np.float32)).cuda()
        rel = rng.standard_normal((rows, width)) + 2.0
        rel[:, width // 2 :][rng.random((rows, width - width // 2)) < 0.5] = np.nan  # padding slots
        eps, topk = np.full((rows, 1), 1e-4), np.full(rows, 3.0)
        out = {}
        for name, module in (("old", old), ("new", new)):
            tile = module.DeviceTile(scores)
            tile.split(rel + eps, rel - eps, topk)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(5):
                result = tile.split(rel + eps, rel - eps, topk)
            torch.cuda.synchronize()
            out[name] = ((time.perf_counter() - start) / 5, result)
        (t_old, r_old), (t_new, r_new) = out["old"], out["new"]
        same = np.array_equal(r_old[0], r_new[0]) and all(np.array_equal(a, b) for a, b in zip(r_old[1], r_new[1]))
        print(f"tile {rows}x{cols} width {width}: old {t_old * 1e3:.2f} ms, new {t_new * 1e3:.2f} ms, identical={same}")


if __name__ == "__main__":
    main()
