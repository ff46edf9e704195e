"""Paired significance on per-query values, at the level of independent units.

A question and its translations are one cluster: XQuAD-R's 13,090 queries are 1,190 questions in 11 languages,
and their APs move together. Every function here takes optional ``clusters`` (one label per query) and then
treats clusters, not queries, as the units:

* :func:`paired_randomization`: two-sided sign-flip test; under the null hypothesis the sign of each cluster's
  summed difference is a coin flip (exact, all 2^n sign vectors, for n <= 20 units; seeded Monte Carlo beyond);
* :func:`paired_bootstrap_ci`: percentile interval of the mean per-query difference, resampling clusters;
* :func:`holm`: Holm's step-down adjustment of several p-values;
* :func:`seed_test`: training seeds as the units (a seed is one sample of training randomness): the same sign-flip
  test (with 5 seeds its smallest possible two-sided p is 1/16) and the paired t-test;
* :func:`t_interval`: mean of one value per seed (a slope, say) with its Student t 95% interval and t-test of 0.
"""

from __future__ import annotations

import itertools

import numpy as np

EXACT_UNITS = 20


def cluster_differences(a, b, clusters=None) -> tuple[np.ndarray, np.ndarray, int]:
    """(summed a - b per unit, queries per unit, queries) with NaN pairs dropped; a unit is a cluster, or a query
    when ``clusters`` is None."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError("paired values must be two equal-length, non-empty 1-D sequences")
    keep = ~(np.isnan(a) | np.isnan(b))
    diff = (a - b)[keep]
    if clusters is None:
        return diff, np.ones(len(diff)), len(diff)
    labels = np.asarray(clusters, dtype=object)
    if len(labels) != len(a):
        raise ValueError("clusters must give one label per query")
    _, index = np.unique(labels[keep].astype(str), return_inverse=True)
    sums = np.bincount(index, weights=diff)
    sizes = np.bincount(index).astype(np.float64)
    return sums, sizes, len(diff)


def _signs(n: int, permutations: int, seed: int) -> tuple[np.ndarray, bool]:
    if n <= EXACT_UNITS:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n))), True
    return np.random.default_rng(seed).choice((1.0, -1.0), size=(permutations, n)), False


def paired_randomization(a, b, permutations: int = 10000, seed: int = 0, clusters=None) -> dict:
    """Sign-flip test of mean(a - b) = 0; with ``clusters`` whole clusters flip together."""
    sums, _, n = cluster_differences(a, b, clusters)
    observed = abs(sums.sum()) - 1e-12 * max(1.0, np.abs(sums).sum())  # ties with the observed count as extreme
    signs, exact = _signs(len(sums), permutations, seed)
    extreme = np.count_nonzero(np.abs(signs @ sums) >= observed)
    p = extreme / len(signs) if exact else (extreme + 1) / (len(signs) + 1)
    return {
        "mean_difference": float(sums.sum() / n),
        "p_value": float(p),
        "n": int(n),
        "units": int(len(sums)),
        "exact": exact,
    }


def paired_bootstrap_ci(a, b, clusters=None, resamples: int = 10000, seed: int = 0, level: float = 0.95):
    """(low, high): percentile bootstrap interval of the mean per-query difference, resampling units."""
    sums, sizes, _ = cluster_differences(a, b, clusters)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(resamples, len(sums)))
    means = sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given), capped at 1 and kept monotone."""
    p = np.asarray(list(p_values), dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def seed_test(a_per_seed, b_per_seed) -> dict:
    """Is a's advantage consistent across training runs? Paired by seed (a seed is one sample of training randomness).

    Two answers: the exact sign-flip test, assumption-free but coarse (its smallest two-sided p is 2 / 2^n: 0.25 with
    3 seeds, 0.0625 with 5, so below 6 seeds it can never reach 0.05), and the paired t-test, which can, at the price
    of assuming normally distributed seed-to-seed differences (None without scipy or with fewer than 2 seeds).
    """
    out = paired_randomization(a_per_seed, b_per_seed)
    n = out["n"]
    return {
        "mean_difference": out["mean_difference"],
        "p_value": out["p_value"],
        "smallest_possible_p": min(1.0, 2.0 / 2**n) if n else 1.0,
        "t_p_value": _paired_t(a_per_seed, b_per_seed),
        "seeds": n,
    }


ROUNDING = 16 * float(np.finfo(np.float64).eps)  # a relative spread at this level is rounding, not data


def _paired_t(a, b) -> float | None:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    diff = diff[~np.isnan(diff)]
    if len(diff) < 2:
        return None
    if diff.std(ddof=1) <= ROUNDING * abs(diff.mean()):
        # No spread beyond rounding: t is 0/0 (no difference) or infinite (the same difference every time, up to
        # the last bits of its float64 subtraction, where scipy's t would rest on rounding noise and warn so).
        return 1.0 if not diff.mean() else 0.0
    try:
        from scipy import stats
    except ImportError:  # pragma: no cover - scipy is a dependency
        return None
    return float(stats.ttest_1samp(diff, 0.0).pvalue)


def t_interval(values, level: float = 0.95) -> dict:
    """Mean of per-seed values with its Student t interval and the two-sided one-sample t-test of mean 0.

    For quantities computed once per training run (a slope across alphas, say): seeds are the units, so the interval
    is mean +- t(n-1) * s / sqrt(n) with s the sample standard deviation. With one value there is no interval.
    """
    values = np.asarray(values, dtype=np.float64)
    mean, n = float(values.mean()), len(values)
    if n < 2:
        return {"mean": mean, "ci95": None, "p_value": None, "seeds": n}
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return {"mean": mean, "ci95": [mean - half, mean + half], "p_value": _paired_t(values, np.zeros(n)), "seeds": n}


def p_text(p: float, digits: int = 3) -> str:
    """The p-value as text, "p = 0.012", or "p < 0.001" below what `digits` can show (a randomization p is never 0)."""
    floor = 10.0**-digits
    return f"p < {floor:.{digits}f}" if p < floor else f"p = {p:.{digits}f}"


def sample_std(values) -> float | None:
    """Sample standard deviation (ddof=1): seeds are a sample of training randomness; None for one value."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1)) if len(values) > 1 else None
