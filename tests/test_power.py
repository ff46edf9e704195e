"""The power analysis behind the pre-registration, and the registered verdict's interim/final rule."""

from __future__ import annotations

import pytest

from xlir_bench.training import confirm
from xlir_bench.training.power import detectable, paired_spreads, power_equivalence, power_paired, seeds_needed


def test_paired_t_power_matches_the_textbook_case():
    """Effect size d = 1 (difference = sd), two-sided 0.05, 80% power: 10 pairs (power 0.803; 9 give 0.759)."""
    assert seeds_needed(lambda n: power_paired(n, 1.0, 1.0, 0.05)) == 10
    assert power_paired(10, 1.0, 1.0, 0.05) == pytest.approx(0.803, abs=0.002)
    assert power_paired(30, 1.0, 0.0, 0.05) == pytest.approx(0.05, abs=1e-9)  # no effect: the test's own level
    assert detectable(10, 1.0, 0.05) == pytest.approx(0.99, abs=0.02)
    assert power_equivalence(5, 1.0, 0.1, 0.05) == 0.0 and power_equivalence(2000, 1.0, 0.1, 0.05) > 0.8


def test_spreads_pair_strategies_by_seed():
    rows = [{"strategy": s, "seed": seed, "setting": "multilingual", "mAP": v}
            for s, seed, v in [("hybrid", 0, 0.5), ("hybrid", 1, 0.6), ("mono", 0, 0.4), ("mono", 1, 0.4),
                               ("cross", 0, 0.45)]]  # fmt: skip
    spreads = paired_spreads({"rows": rows})
    assert spreads["hybrid vs mono"]["gaps"] == pytest.approx([0.1, 0.2])
    assert "hybrid vs cross" not in spreads  # one common seed: no spread


def test_the_registered_verdict_waits_for_every_seed():
    interval = {"mean_difference": -0.02, "ci97.5": [-0.03, -0.01], "ci95": [-0.028, -0.012], "ci90": [-0.026, -0.014]}
    equal = {"mean_difference": 0.0, "ci97.5": [-0.006, 0.006], "ci95": [-0.004, 0.004], "ci90": [-0.003, 0.003]}
    summary = {"comparisons_multilingual_AP": {"hybrid vs cross": {"two_level": interval},
                                               "hybrid vs mono": {"two_level": equal}}}  # fmt: skip
    seeds = confirm.REGISTERED["seeds"]
    assert confirm.registered_verdict(summary, seeds - 1)["status"].startswith(f"interim: {seeds - 1} of {seeds}")
    final = confirm.registered_verdict(summary, seeds)
    assert final["level"] == 0.975 and final["verdicts"]["hybrid vs cross"]["verdict"] == "lower"
    assert final["verdicts"]["hybrid vs mono"]["verdict"] == "equivalent"  # the 95% interval within ±0.005
    assert "- hybrid vs cross: **lower**, -0.0200 [-0.0300, -0.0100]" in confirm.render_registered(final)


def test_interim_summaries_carry_no_verdict(tmp_path):
    """The stopping rule: before every registered seed is in, the summary keeps its numbers but no verdict word, and
    its Markdown withholds the reading; the run resumes after the rounds a committed summary covers."""
    import json

    from xlir_bench.training.readings import INTERIM_READING, render_markdown

    summary = {
        "comparisons_multilingual_AP": {
            "hybrid vs cross": {"two_level": {"mean_difference": -0.01}, "verdict": "lower"}
        },
        "vs_base": {"mono": {"multilingual": {"verdict": "higher", "mean_difference": 0.2}}},
    }
    confirm.withhold_verdicts(summary)
    assert "verdict" not in json.dumps(summary) and summary["vs_base"]["mono"]["multilingual"]["mean_difference"]
    meta = {"base": "e5-small", "train": "mlqa-r", "eval": "xquad-r", "command": "c", "seeds": 3, "max_steps": 120,
            "batch_size": 32, "alpha": 0.5, "overlap": {"queries": 0.0, "candidates": 0.0}}  # fmt: skip
    interim = {"table": {}, "registered": confirm.registered_verdict({}, 3)}
    text = render_markdown(interim, meta)
    assert INTERIM_READING in text and "**Registered verdict:** interim: 3 of 22 seeds" in text
    assert confirm.rounds_written(tmp_path) == 0
    confirm.summary_path(tmp_path).parent.mkdir(parents=True)
    confirm.summary_path(tmp_path).write_text(json.dumps({"meta": meta}))
    assert confirm.rounds_written(tmp_path) == 3


def test_the_run_counts_its_registered_models(tmp_path):
    """The whole run's progress (it spans sessions): registered models with a result, from the same names the
    training loop gives them (mono, cross, hybrid per seed; the registered hybrid draw is named -exact)."""
    from xlir_bench import results
    from xlir_bench.training.experiment import planned_models

    planned = planned_models(**confirm.REGISTERED)
    assert [(seed, strategy, name) for seed, strategy, _, name in planned[:3]] == [
        (0, "mono", "ds-e5-small-mlqa-r-mono-120st-s0"),
        (0, "cross", "ds-e5-small-mlqa-r-cross-120st-s0"),
        (0, "hybrid", "ds-e5-small-mlqa-r-hybrid-120st-exact-s0"),
    ]
    assert planned[2][2] == (0.5, "constant", "exact") and planned[0][2] == (0.5, "constant", "exact")
    assert confirm.models_with_results(tmp_path) == (0, 66)
    for *_, name in planned[:4]:
        path = results.result_path(tmp_path, f"trained:{name}", "xquad-r")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    assert confirm.models_with_results(tmp_path) == (4, 66)
