"""How far two sets of results differ: per (suite, model), the largest change of every measure over all settings
and groups, and of per-query AP. Used to check the reference results re-run by the one engine against the ones
the two-engine harness wrote (``git show <commit>:results/...`` into a folder first).

Usage: python benchmarks/diagnostics/result_drift.py OLD_RESULTS_DIR NEW_RESULTS_DIR
Last line: max_measure_change=<x> (over every model, suite, setting, group and measure)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from xlir_bench import results

MEASURES = ("mAP", "R@1", "R@10", "R@100", "nDCG@10", "MRR")


def groups(block: dict) -> dict[str, dict]:
    out = {"all": block["metrics"]}
    for key in ("per_language", "per_pair"):
        out.update({f"{key}:{g}": v for g, v in (block.get(key) or {}).items()})
    return out


def per_query(doc: dict, setting: str) -> np.ndarray:
    values = doc["per_query"]["AP"].get(setting)
    if isinstance(values, dict):
        values = [v for pool in sorted(values) for v in values[pool]]
    return np.array([np.nan if v is None else v for v in values or []], dtype=np.float64)


def main() -> None:
    old_root, new_root = Path(sys.argv[1]), Path(sys.argv[2])
    overall = 0.0
    print("| suite | model | measure | largest change | where | per-query AP: largest change, queries moved |")
    print("|---|---|---|---|---|---|")
    for new_path in sorted(new_root.glob("*/*.json")):
        old_path = old_root / new_path.relative_to(new_root)
        if not old_path.is_file() or new_path.parent.name in results.RESERVED_FOLDERS:
            continue
        old, new = results.read_result(old_path), results.read_result(new_path)
        if "engine" not in new:
            continue  # not re-run
        worst: dict[str, tuple[float, str]] = {}
        for setting, block in new["settings"].items():
            before = old["settings"].get(setting)
            if before is None:
                continue
            for group, values in groups(block).items():
                for m in MEASURES:
                    a, b = (groups(before).get(group) or {}).get(m), values.get(m)
                    if a is not None and b is not None:
                        change = abs(b - a)
                        if change >= worst.get(m, (-1.0, ""))[0]:
                            worst[m] = (change, f"{setting} {group}")
        pq = []
        for setting in new["settings"]:
            a, b = per_query(old, setting), per_query(new, setting)
            if len(a) == len(b) and len(a):
                diff = np.abs(np.nan_to_num(a, nan=-1) - np.nan_to_num(b, nan=-1))
                pq.append((float(diff.max()), int((diff > 1e-6).sum())))
        pq_text = f"{max(p[0] for p in pq):.2e}, {sum(p[1] for p in pq)}" if pq else "-"
        for m, (change, where) in worst.items():
            overall = max(overall, change)
            print(f"| {new['suite']['name']} | {new['model']['name']} | {m} | {change:.2e} | {where} | {pq_text} |")
    print(f"max_measure_change={overall:.2e}")


if __name__ == "__main__":
    main()
