"""Inference about training strategies: the training run and the question are both sampled, so both are resampled.

A claim "strategy A retrieves better than strategy B" is about what training with A gives, not about the five
models that happened to be trained. :func:`two_level_interval` draws, per bootstrap replicate, the seeds (training
runs) with replacement and the question clusters (a question with all its translations) with replacement, and
recomputes the mean per-query difference; its percentile interval carries both sources of variation. Question-level
tests that hold the trained models fixed see only the second, and are about 8x narrower on this project's data.

:func:`verdict` is the symmetric decision rule every strategy comparison uses: higher or lower when the 95% interval
excludes 0, equivalent when the 90% interval lies within +-margin (two one-sided tests, TOST, at 0.05), inconclusive
otherwise. The margin is part of the rule and must be fixed before the data it judges.
"""

from __future__ import annotations

import numpy as np

MARGIN = 0.005  # mAP: the smallest difference between training strategies this project treats as worth claiming


def _cluster_sums(runs: np.ndarray, clusters) -> tuple[np.ndarray, np.ndarray]:
    """(per-seed sums of the per-query values within each cluster, queries per cluster)."""
    if clusters is None:
        index = np.arange(runs.shape[1])
    else:
        _, index = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    width = int(index.max()) + 1
    sums = np.stack([np.bincount(index, weights=row, minlength=width) for row in runs])
    return sums, np.bincount(index, minlength=width).astype(np.float64)


def two_level_interval(a_runs, b_runs, clusters=None, resamples: int = 10000, seed: int = 0,
                       levels: tuple[float, ...] = (0.975, 0.95, 0.90)) -> dict:  # fmt: skip
    """Mean per-query difference a - b (each averaged over its seeds) with percentile intervals from resampling
    seeds and question clusters. ``a_runs``/``b_runs``: one row of per-query values per seed (a 1-D ``b_runs`` is
    one deterministic model, the untrained base). With the same number of seeds on both sides the seeds are
    resampled in pairs (seed s of every strategy trains on the same split), otherwise independently."""
    a, b = np.atleast_2d(np.asarray(a_runs, np.float64)), np.atleast_2d(np.asarray(b_runs, np.float64))
    if a.shape[1] != b.shape[1] or (clusters is not None and len(clusters) != a.shape[1]):
        raise ValueError("both sides need per-query values for the same queries, and clusters one label per query")
    keep = ~(np.isnan(a).any(axis=0) | np.isnan(b).any(axis=0))  # queries outside the setting (None) on any run
    a, b = a[:, keep], b[:, keep]
    clusters = None if clusters is None else np.asarray(clusters, dtype=object)[keep]
    sums_a, sizes = _cluster_sums(a, clusters)
    sums_b, _ = _cluster_sums(b, clusters)
    rng = np.random.default_rng(seed)
    units, (ka, kb) = len(sizes), (len(a), len(b))
    paired = ka == kb
    draws = np.empty(resamples)
    chunk = max(1, 4_000_000 // (units * max(ka, kb)))
    for start in range(0, resamples, chunk):
        r = min(chunk, resamples - start)
        weights = rng.multinomial(units, np.full(units, 1.0 / units), size=r).astype(np.float64)
        pick_a = rng.integers(ka, size=(r, ka))
        pick_b = pick_a if paired else rng.integers(kb, size=(r, kb))
        diff = sums_a[pick_a].mean(axis=1) - sums_b[pick_b].mean(axis=1)
        draws[start : start + r] = (weights * diff).sum(axis=1) / (weights @ sizes)
    out = {"mean_difference": float(a.mean(axis=0).sum() / a.shape[1] - b.mean(axis=0).sum() / b.shape[1]),
           "seeds": [ka, kb], "units": units, "resamples": resamples}  # fmt: skip
    for level in levels:
        tail = (1 - level) / 2
        out[ci_key(level)] = [float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail))]
    return out


def ci_key(level: float) -> str:
    """ "ci95" for 0.95, "ci97.5" for 0.975."""
    return f"ci{level * 100:g}"


def verdict(interval: dict, margin: float = MARGIN, level: float = 0.95) -> str:
    """``higher``, ``lower``, ``equivalent`` (TOST within +-margin) or ``inconclusive``, from
    :func:`two_level_interval`: the two-sided ``level`` interval decides a difference, and the two one-sided tests
    at (1 - level) / 2 each, i.e. the ``2 level - 1`` interval, decide equivalence."""
    low, high = interval[ci_key(level)]
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    low_tost, high_tost = interval[ci_key(round(2 * level - 1, 6))]
    return "equivalent" if -margin < low_tost and high_tost < margin else "inconclusive"
