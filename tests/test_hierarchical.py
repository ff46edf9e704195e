"""The two-level (seed x question) bootstrap and the symmetric verdict, on constructed data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from xlir_bench.metrics.hierarchical import two_level_interval, verdict
from xlir_bench.metrics.significance import paired_bootstrap_ci


def _questions(n_questions=200, languages=5, seed=0):
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0.2, 0.8, n_questions)
    clusters = np.repeat(np.arange(n_questions), languages)
    return rng, np.repeat(difficulty, languages), clusters


def test_a_constant_shift_gives_a_degenerate_interval_and_a_verdict():
    rng, base, clusters = _questions()
    b = base + rng.normal(0, 0.05, (4, len(base)))
    out = two_level_interval(b + 0.1, b, clusters, resamples=500)
    assert out["mean_difference"] == pytest.approx(0.1)
    assert out["ci95"] == pytest.approx([0.1, 0.1]) and verdict(out) == "higher"
    assert verdict(two_level_interval(b, b + 0.1, clusters, resamples=500)) == "lower"
    same = two_level_interval(b, b, clusters, resamples=500)
    assert same["ci95"] == [0.0, 0.0] and verdict(same) == "equivalent"


def test_without_seed_variation_it_matches_the_question_bootstrap():
    rng, base, clusters = _questions()
    a = np.tile(base + rng.normal(0.01, 0.1, len(base)), (3, 1))  # three identical "seeds"
    b = np.tile(base, (3, 1))
    two = two_level_interval(a, b, clusters, resamples=4000)
    low, high = paired_bootstrap_ci(a[0], b[0], clusters=clusters, resamples=4000)
    assert two["ci95"][0] == pytest.approx(low, abs=0.002) and two["ci95"][1] == pytest.approx(high, abs=0.002)


def test_seed_variation_widens_the_interval_the_question_level_cannot_see():
    """Each seed shifts every query alike by N(0, 0.02): the question-level interval of the seed-averaged values
    stays narrow, the two-level one covers the seed spread (sd of a 5-seed mean difference ~0.0126)."""
    rng, base, clusters = _questions(n_questions=400)
    shifts_a, shifts_b = rng.normal(0, 0.02, (5, 1)), rng.normal(0, 0.02, (5, 1))
    a = base + 0.005 + shifts_a + rng.normal(0, 0.05, (5, len(base)))
    b = base + shifts_b + rng.normal(0, 0.05, (5, len(base)))
    two = two_level_interval(a, b, clusters, resamples=4000)
    low, high = paired_bootstrap_ci(a.mean(0), b.mean(0), clusters=clusters, resamples=4000)
    assert (two["ci95"][1] - two["ci95"][0]) > 4 * (high - low)
    assert two["ci95"][0] < 0 < two["ci95"][1] and verdict(two) == "inconclusive"


def test_a_one_model_baseline_and_missing_queries():
    rng, base, clusters = _questions()
    a = base + 0.2 + rng.normal(0, 0.01, (3, len(base)))
    b = base.copy()
    b[:5] = np.nan  # queries outside the setting are left out on both sides
    out = two_level_interval(a, b, clusters, resamples=300)
    assert out["seeds"] == [3, 1] and out["units"] == 199  # questions 0 lost all 5 of its queries
    assert out["mean_difference"] == pytest.approx(float(np.mean(a[:, 5:] - b[5:])))
    with pytest.raises(ValueError, match="one label per query"):
        two_level_interval(a, b, clusters[:-1])


@pytest.mark.parametrize(
    ("ci95", "ci90", "expected"),
    [([0.001, 0.02], [0.002, 0.018], "higher"), ([-0.03, -0.0001], [-0.02, -0.001], "lower"),
     ([-0.004, 0.0045], [-0.003, 0.004], "equivalent"), ([-0.006, 0.003], [-0.0051, 0.002], "inconclusive")],
)  # fmt: skip
def test_the_verdict_is_symmetric(ci95, ci90, expected):
    assert verdict({"ci95": ci95, "ci90": ci90}) == expected
    mirrored = {"ci95": [-ci95[1], -ci95[0]], "ci90": [-ci90[1], -ci90[0]]}
    assert verdict(mirrored) == {"higher": "lower", "lower": "higher"}.get(expected, expected)
