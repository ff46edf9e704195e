"""Cluster-level paired statistics (issue 10): known answers, and agreement with scipy where scipy has the same
test (per-query units)."""

from __future__ import annotations

import numpy as np
import pytest

from xlir_bench.metrics.significance import (
    holm,
    p_text,
    paired_bootstrap_ci,
    paired_randomization,
    sample_std,
    seed_test,
    t_interval,
)


def test_cluster_test_has_the_known_exact_answer():
    """3 questions x 4 translations, differences constant within a question (4 x 1, 4 x 2, 4 x -0.5): the cluster
    sums are 4, 8, -2 and exactly 4 of the 8 sign vectors reach |10|, so p = 0.5. Treating the 12 translations as
    independent gives p = 140/4096 = 0.034, "significant": the error the cluster test avoids."""
    diff = np.repeat([1.0, 2.0, -0.5], 4)
    clusters = np.repeat(["q1", "q2", "q3"], 4)
    clustered = paired_randomization(diff, np.zeros(12), clusters=clusters)
    assert clustered["p_value"] == 0.5 and clustered["units"] == 3 and clustered["n"] == 12 and clustered["exact"]
    naive = paired_randomization(diff, np.zeros(12))
    assert naive["p_value"] == 140 / 4096 and naive["units"] == 12
    assert clustered["mean_difference"] == pytest.approx(diff.mean())


def test_per_query_exact_test_agrees_with_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.random(12), rng.random(12)
    ours = paired_randomization(a, b)["p_value"]
    theirs = scipy_stats.permutation_test(
        (a, b), lambda x, y: np.mean(x - y), permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    ).pvalue
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_bootstrap_interval_resamples_clusters():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    per_cluster = rng.normal(0.02, 0.05, 300)
    diff = np.repeat(per_cluster, 5) + rng.normal(0, 0.001, 1500)  # five near-identical translations each
    clusters = np.repeat(np.arange(300), 5)
    low, high = paired_bootstrap_ci(diff, np.zeros(1500), clusters=clusters, resamples=4000)
    ref = scipy_stats.bootstrap((per_cluster,), np.mean, n_resamples=4000, method="percentile", random_state=1)
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.002)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.002)
    naive_low, naive_high = paired_bootstrap_ci(diff, np.zeros(1500), resamples=4000)
    assert (naive_high - naive_low) < 0.6 * (high - low)  # ignoring clusters understates the uncertainty


def test_holm_known_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_seed_test_and_sample_std():
    assert seed_test([0.5, 0.52, 0.51, 0.53, 0.50], [0.4, 0.41, 0.42, 0.40, 0.43])["p_value"] == pytest.approx(2 / 32)
    assert sample_std([1.0, 2.0, 3.0]) == pytest.approx(1.0) and sample_std([1.0]) is None


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        paired_randomization([1], [1, 2])
    with pytest.raises(ValueError, match="one label per query"):
        paired_randomization([1, 2], [1, 2], clusters=["a"])
    assert paired_randomization([1, 2, 3], [1, 2, 3])["p_value"] == 1.0


def test_seed_test_gives_the_paired_t_test_and_the_sign_flip_floor():
    """With 5 seeds the exact sign-flip test cannot go below 2/32 > 0.05; the paired t-test (checked against
    scipy) can; no spread gives 1 (no difference) or 0 (the same difference every seed)."""
    from scipy import stats

    a, b = [0.5, 0.52, 0.51, 0.53, 0.50], [0.4, 0.41, 0.42, 0.40, 0.43]
    out = seed_test(a, b)
    assert out["smallest_possible_p"] == pytest.approx(2 / 32) and out["p_value"] >= out["smallest_possible_p"]
    assert out["t_p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert out["t_p_value"] < 0.05 <= out["p_value"]
    assert seed_test([0.5, 0.6], [0.5, 0.6])["t_p_value"] == 1.0
    assert seed_test([0.6, 0.7], [0.5, 0.6])["t_p_value"] == 0.0
    assert seed_test([0.6], [0.5])["t_p_value"] is None


def test_a_spread_of_rounding_alone_counts_as_no_spread(recwarn):
    """Differences equal up to their last bits (a slope that is the same in every seed, computed in float64) are
    the same difference every time: p = 0 without scipy's precision warning, not a t resting on rounding noise. A
    real spread, however small against the mean, still goes to the t-test."""
    same = [0.1, float(np.nextafter(0.1, 1.0)), float(np.nextafter(0.1, 0.0))]
    assert seed_test(same, [0.0, 0.0, 0.0])["t_p_value"] == 0.0
    assert t_interval(same)["p_value"] == 0.0
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    from scipy import stats

    small = [0.1, 0.1 + 1e-9, 0.1 - 2e-9]
    assert seed_test(small, [0.0] * 3)["t_p_value"] == pytest.approx(stats.ttest_1samp(small, 0.0).pvalue, rel=1e-9)


def test_p_text_never_prints_zero():
    """A randomization p is at least 1/(permutations+1), never 0: below what 3 digits show it reads "p < 0.001"."""
    assert p_text(0.0001) == "p < 0.001"
    assert p_text(0.0012) == "p = 0.001"
    assert p_text(0.05) == "p = 0.050"
    assert p_text(0.00004, digits=4) == "p < 0.0001"


def test_t_interval_has_the_closed_form_answer_for_two_degrees_of_freedom():
    """Slopes 1, 2, 3 from three seeds: mean 2, s = 1, t = 2 / (1 / sqrt 3). With 2 degrees of freedom Student's t
    has a closed form, F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so the 97.5% quantile is 0.95 sqrt(2 / (1 - 0.95^2)) and
    the two-sided p is 1 - t / sqrt(2 + t^2): no table and no scipy in the expected values."""
    out = t_interval([3.0, 1.0, 2.0])
    quantile = 0.95 * np.sqrt(2 / (1 - 0.95**2))
    half = quantile / np.sqrt(3)
    t = 2 * np.sqrt(3)
    assert out["mean"] == pytest.approx(2.0) and out["seeds"] == 3
    assert out["ci95"] == pytest.approx([2 - half, 2 + half])
    assert out["p_value"] == pytest.approx(1 - t / np.sqrt(2 + t**2))
    assert t_interval([0.5]) == {"mean": 0.5, "ci95": None, "p_value": None, "seeds": 1}
