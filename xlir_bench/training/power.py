"""Seeds per strategy for a comparison of training strategies, from the seed-to-seed spread already observed.

The unit is the training run, so the planning value is the sample standard deviation over seeds of the paired
per-seed difference of multilingual mAP (seed s of two strategies shares its data split). For a paired t-test at
two-sided ``alpha`` (Bonferroni over the registered family) the seeds needed to detect a difference ``delta`` with
probability ``power`` come from the noncentral t distribution; for equivalence within +-margin (two one-sided
tests, true difference 0) approximately, at one-sided ``alpha`` (the spread of the sd estimate is ignored there).
The two-level bootstrap the verdict uses adds the question clusters' variation, which is small against the
seeds' here (the question-level interval is about 1/8 as wide).

``python -m xlir_bench.training.power [SUMMARY.json [SEEDS]]`` prints the analysis the pre-registration quotes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..fileio import read_json

MAX_SEEDS = 500


def power_paired(n: int, sd: float, delta: float, alpha: float) -> float:
    """Power of the two-sided paired t-test with ``n`` seeds to detect a true mean difference ``delta``."""
    from scipy import stats

    df, nc = n - 1, abs(delta) / (sd / np.sqrt(n))
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def power_equivalence(n: int, sd: float, margin: float, alpha: float) -> float:
    """Power of two one-sided tests (each at ``alpha``) to show |difference| < margin when it is 0."""
    from scipy import stats

    df, nc = n - 1, margin / (sd / np.sqrt(n))
    crit = stats.t.ppf(1 - alpha, df)
    return float(max(0.0, 2 * stats.nct.cdf(nc - crit, df, 0.0) - 1))  # both one-sided tests reject


def seeds_needed(power_of, target: float = 0.8) -> int | None:
    """The smallest n >= 2 whose power reaches ``target`` (None beyond ``MAX_SEEDS``)."""
    return next((n for n in range(2, MAX_SEEDS + 1) if power_of(n) >= target), None)


def detectable(n: int, sd: float, alpha: float, target: float = 0.8) -> float:
    """The smallest difference the paired t-test detects with probability ``target`` at ``n`` seeds."""
    low, high = 0.0, 10 * sd + 1e-12
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if power_paired(n, sd, mid, alpha) < target else (low, mid)
    return high


def paired_spreads(summary: dict) -> dict[str, dict]:
    """Per comparison of trained strategies: the per-seed differences of multilingual mAP and their sample sd."""
    by = {(r["strategy"], r["seed"]): r["mAP"] for r in summary["rows"] if r["setting"] == "multilingual"}
    out = {}
    for a, b in (("hybrid", "mono"), ("hybrid", "cross"), ("cross", "mono")):
        seeds = sorted(s for (k, s) in by if k == a and (b, s) in by)
        gaps = [by[(a, s)] - by[(b, s)] for s in seeds]
        if len(gaps) >= 2:
            out[f"{a} vs {b}"] = {"gaps": gaps, "mean": float(np.mean(gaps)), "sd": float(np.std(gaps, ddof=1))}
    return out


def analysis(summary: dict, margin: float, alpha: float, planned: int) -> list[str]:
    lines = [
        f"| comparison | seeds observed | mean difference | sd over seeds | seeds for 80% power at ±{margin:g} "
        f"| seeds for 80% power at the observed difference | equivalence (TOST) within ±{margin:g}, 80% power "
        f"| power at {planned} seeds, ±{margin:g} | detectable at {planned} seeds (80%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in paired_spreads(summary).items():
        sd, mean = s["sd"], s["mean"]
        at_margin = seeds_needed(lambda n, sd=sd: power_paired(n, sd, margin, alpha))
        at_observed = seeds_needed(lambda n, sd=sd, mean=mean: power_paired(n, sd, mean, alpha))
        tost = seeds_needed(lambda n, sd=sd: power_equivalence(n, sd, margin, alpha / 2))
        lines.append(
            f"| {name} | {len(s['gaps'])} | {s['mean']:+.4f} | {sd:.4f} | {at_margin or f'> {MAX_SEEDS}'} | "
            f"{at_observed or f'> {MAX_SEEDS}'} | {tost or f'> {MAX_SEEDS}'} | "
            f"{power_paired(planned, sd, margin, alpha):.2f} | {detectable(planned, sd, alpha):.4f} |"
        )
    return lines


def main(argv: list[str]) -> int:
    from ..metrics.hierarchical import MARGIN

    path = Path(argv[0] if argv else "results/experiments/domain-shift-e5-small-mlqa-r-to-xquad-r.json")
    summary = read_json(path)
    alpha, planned = 0.05 / 2, int(argv[1]) if len(argv) > 1 else 10  # Bonferroni over the two primary comparisons
    print(f"Planning values from {path} (multilingual mAP per seed); two-sided alpha {alpha} per comparison.")
    print()
    print("\n".join(analysis(summary, MARGIN, alpha, planned)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
