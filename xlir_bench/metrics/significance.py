"""Paired significance on per-query values: a two-sided sign-flip randomization test (exact for small n).

Used on per-query AP of two systems over the same queries: under the null hypothesis the sign of each paired
difference is a coin flip. ``permutations`` random sign vectors (seeded) estimate the p-value; with n <= 20 all
2^n sign vectors are enumerated.
"""

from __future__ import annotations

import itertools

import numpy as np


def paired_randomization(a, b, permutations: int = 10000, seed: int = 0) -> dict:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError("paired values must be two equal-length, non-empty 1-D sequences")
    diff = a - b
    observed = abs(diff.mean()) - 1e-12  # tolerance: a relabelling equal to the observed counts as extreme
    if len(diff) <= 20:  # every sign vector: the exact p-value
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(diff))))
        p = np.count_nonzero(np.abs((signs * diff).mean(axis=1)) >= observed) / len(signs)
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(permutations, len(diff)))
        p = (np.count_nonzero(np.abs((signs * diff).mean(axis=1)) >= observed) + 1) / (permutations + 1)
    return {"mean_difference": float(diff.mean()), "p_value": float(p), "n": int(len(diff))}
