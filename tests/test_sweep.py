"""The alpha sweep's summary: comparisons with fixed alpha 0.5 and the verdict, on constructed numbers with a known
answer (the sweep's training is the domain-shift experiment's, tested in test_experiment.py)."""

from types import SimpleNamespace

import numpy as np
import pytest

from xlir_bench.training import sweep

QUESTIONS, LANGS = 60, 3


def _suite():
    queries = [SimpleNamespace(group_id=f"q{q}") for q in range(QUESTIONS) for _ in range(LANGS)]
    return SimpleNamespace(name="toy", queries=queries)


def _rows(strategy, seeds, mono, multi, rank_distance, tag):
    rows = []
    for seed in range(seeds):
        model = f"trained:{tag}-{strategy}-s{seed}"
        rows.append({"model": model, "strategy": strategy, "seed": seed, "setting": "monolingual", "mAP": mono[seed]})
        rows.append({"model": model, "strategy": strategy, "seed": seed, "setting": "multilingual",
                     "mAP": multi[seed], "rank_distance": rank_distance[seed], "lang_pref@1": 0.5})  # fmt: skip
    return rows


def _case(monkeypatch, seeds=4):
    """Baseline hybrid at 0.5; alpha=0.25 better multilingual by 0.05 on every question, rank distance lower in every
    seed, monolingual equal: beats. alpha=0.75 the same but monolingual 0.05 lower: does not beat. mono (alpha=1)
    identical to the baseline: does not beat."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, size=QUESTIONS * LANGS)
    jitter = [0.0, 0.003, -0.002, 0.001][:seeds]
    per_query = {}
    summaries = {}
    specs = {  # label: (strategy, monolingual shift, multilingual shift, rank distance shift)
        "alpha=0.5": ("hybrid", 0.0, 0.0, 0.0),
        "alpha=0.25": ("hybrid", 0.0, 0.05, -20.0),
        "alpha=0.75": ("hybrid", -0.05, 0.05, -20.0),
    }
    for label, (strategy, d_mono, d_multi, d_rank) in specs.items():
        rows = _rows(
            strategy, seeds, [0.6 + d_mono + j for j in jitter], [0.4 + d_multi + j for j in jitter],
            [300 + d_rank + 100 * j for j in jitter], label,
        )  # fmt: skip
        if label == "alpha=0.5":  # the baseline's summary also holds the mono and cross models
            rows += _rows("mono", seeds, [0.6 + j for j in jitter], [0.4 + j for j in jitter],
                          [300 + 100 * j for j in jitter], label)  # fmt: skip
        summaries[label] = {"rows": rows}
        for row in rows:
            shift = (
                {"monolingual": d_mono, "multilingual": d_multi}[row["setting"]] if row["strategy"] == "hybrid" else 0
            )
            per_query.setdefault(row["model"], {})[row["setting"]] = base + shift + jitter[row["seed"]]
    monkeypatch.setattr(
        sweep, "per_query_runs",
        lambda root, suite, records: {s: np.array([per_query[r["model"]][s] for r in records])
                                      for s in ("monolingual", "multilingual")},
    )  # fmt: skip
    return summaries


def test_sweep_compares_with_fixed_half_and_answers(monkeypatch, tmp_path):
    summaries = _case(monkeypatch)
    result = sweep.summarise_sweep(summaries, tmp_path, _suite(), resamples=500)
    assert result["clusters"] == QUESTIONS
    assert list(result["table"]) == ["alpha=1 (mono)", "alpha=0.75", "alpha=0.5", "alpha=0.25"]  # cross absent
    assert result["table"]["alpha=0.25"]["multilingual"]["n"] == 4
    assert result["table"]["alpha=0.25"]["multilingual"]["std"] == pytest.approx(np.std([0, 0.003, -0.002, 0.001],
                                                                                         ddof=1))  # fmt: skip
    cmp = result["comparisons_vs_baseline"]
    assert set(cmp) == {"alpha=1 (mono)", "alpha=0.75", "alpha=0.25"}
    better = cmp["alpha=0.25"]
    assert better["multilingual_AP"]["mean_difference"] == pytest.approx(0.05)
    assert better["multilingual_AP"]["units"] == QUESTIONS and better["multilingual_AP"]["significant"]
    assert better["multilingual_AP"]["ci95"][0] == pytest.approx(0.05) and better["beats_baseline"]
    assert better["rank_distance_across_seeds"]["mean_difference"] == pytest.approx(-20.0)
    assert not better["monolingual_AP"]["significant"]
    assert not cmp["alpha=0.75"]["beats_baseline"]  # monolingual AP lower
    assert cmp["alpha=0.75"]["monolingual_AP"]["significant"]
    assert not cmp["alpha=1 (mono)"]["beats_baseline"] and not cmp["alpha=1 (mono)"]["multilingual_AP"]["significant"]
    text = sweep.render_sweep(result, {"base": "b", "train": "t", "eval": "e", "seeds": 4, "max_steps": 60,
                                       "batch_size": 32, "trainer_version": 3})  # fmt: skip
    assert "- Answer: alpha=0.25 beats fixed alpha 0.5" in text
    partial = sweep.render_sweep(result, {"base": "b", "train": "t", "eval": "e", "seeds": 4, "seeds_asked": 5,
                                          "max_steps": 60, "batch_size": 32, "trainer_version": 3})  # fmt: skip
    assert "- Answer so far (4 of the 5 seeds asked): alpha=0.25 beats fixed alpha 0.5" in partial
    assert "alpha=0.75 (4 seeds) vs alpha=0.5:" in text and "does not beat fixed 0.5 (monolingual AP lower)" in text
    assert cmp["alpha=1 (mono)"]["shortfalls"] == [
        "multilingual AP not higher at the question level", "multilingual mAP not higher across seeds",
        "rank distance not lower across seeds",
    ]  # fmt: skip
    assert "| alpha=0.25 | 4 | 0.6005 ± 0.0021 | 0.4505 ± 0.0021 | 280.0 ± 0.2 | 0.500 |" in text
    # the symmetric rule: +0.05 on every question of every seed is higher; the same values are equivalent
    assert better["two_level"]["multilingual"]["verdict"] == "higher"
    assert better["two_level"]["monolingual"]["verdict"] == "equivalent"
    assert cmp["alpha=0.75"]["two_level"]["monolingual"]["verdict"] == "lower"
    assert "  - alpha=0.25: multilingual AP +0.0500 [+0.0500, +0.0500] (higher); monolingual AP +0.0000" in text


def test_one_seed_leaves_the_question_open(monkeypatch, tmp_path):
    """After the first round of seeds the tests across seeds cannot run: a configuration that beats 0.5 at the
    question level is not declared a winner, nor are the untested checks reported as failed."""
    result = sweep.summarise_sweep(_case(monkeypatch, seeds=1), tmp_path, _suite(), resamples=500)
    better = result["comparisons_vs_baseline"]["alpha=0.25"]
    assert better["multilingual_AP"]["significant"] and not better["beats_baseline"]
    assert better["shortfalls"] == [
        "multilingual mAP across seeds untested (one seed)", "rank distance across seeds untested (one seed)",
    ]  # fmt: skip
    text = sweep.render_sweep(result, {"base": "b", "train": "t", "eval": "e", "seeds": 1, "max_steps": 60,
                                       "batch_size": 32, "trainer_version": 3})  # fmt: skip
    assert "alpha=0.25 (1 seed) vs alpha=0.5:" in text and "- Answer: not yet;" in text
    assert "fixed alpha 0.5 on multilingual" not in text and "no alpha or schedule beats" not in text


def test_sweep_without_the_baseline_says_what_to_run(monkeypatch, tmp_path):
    from xlir_bench.errors import XlirError

    summaries = _case(monkeypatch)
    with pytest.raises(XlirError, match="alpha-sweep"):
        sweep.summarise_sweep({"alpha=0.25": summaries["alpha=0.25"]}, tmp_path, _suite())


def test_sweep_runs_seed_major_and_names_its_summary(monkeypatch, tmp_path):
    """Every configuration's seed 0 before any seed 1 (an interrupted sweep covers all configurations); the sweep's
    summary is rewritten after every round and named after the fixed-0.5 experiment; each configuration's own
    summary is written once, with all seeds, and only where it adds seeds (never over a committed one with as many)."""
    import json

    from xlir_bench import suites

    summaries = _case(monkeypatch)
    calls, written, rounds = [], [], []

    def fake_domain_shift(*, seeds, alpha, alpha_schedule, results_root, **common):
        calls.append((seeds, alpha, alpha_schedule))
        label = next(c.label for c in sweep.HYBRID_RUNS if (c.alpha, c.schedule) == (alpha, alpha_schedule))
        rows = [r for r in summaries.get(label, {"rows": []})["rows"] if r["seed"] < seeds]
        meta = {"base": "b", "train": "t", "eval": "e", "max_steps": 60, "batch_size": 32, "alpha": alpha}
        stem = "domain-shift-b-t-to-e" + ("" if label == "alpha=0.5" else f"-{label}")
        return {"rows": rows}, meta, stem

    real_write_sweep = sweep.write_sweep

    def spy_write_sweep(root, stem, result, meta):
        rounds.append(meta["seeds"])
        return real_write_sweep(root, stem, result, meta)

    monkeypatch.setattr(sweep, "domain_shift", fake_domain_shift)
    monkeypatch.setattr(sweep, "write_summary", lambda root, stem, summary, meta: written.append((stem, len(
        {r["seed"] for r in summary["rows"]}))))  # fmt: skip
    monkeypatch.setattr(sweep, "write_sweep", spy_write_sweep)
    monkeypatch.setattr(suites, "load", lambda name, data_dir=None: _suite())
    json_path, md_path = sweep.run_alpha_sweep(
        seeds=2, results_root=tmp_path, base="b", train="t", evaluate="e", max_steps=60, data_dir=None
    )
    hybrids = [(c.alpha, c.schedule) for c in sweep.HYBRID_RUNS]
    assert calls == [(1, *h) for h in hybrids] + [(2, *h) for h in hybrids]
    assert rounds == [1, 2]
    assert ("domain-shift-b-t-to-e", 2) in written and len(written) == len(hybrids)  # the final round only
    assert json_path.name == "alpha-sweep-b-t-to-e.json" and md_path.is_file()
    result = json.loads(json_path.read_text())
    assert result["meta"]["seeds"] == 2 and result["meta"]["seeds_asked"] == 2 and "alpha" not in result["meta"]
    assert result["table"]["alpha=0.25"]["multilingual"]["n"] == 2
    assert "Seeds: 2 of 2 asked" in md_path.read_text()

    (tmp_path / "experiments" / "domain-shift-b-t-to-e.json").write_text(json.dumps({"meta": {"seeds": 5}}))
    written.clear()
    sweep.run_alpha_sweep(seeds=1, results_root=tmp_path, base="b", train="t", evaluate="e", max_steps=60,
                          data_dir=None)  # fmt: skip
    assert ("domain-shift-b-t-to-e", 1) not in written and len(written) == len(hybrids) - 1  # 5 seeds kept

    rounds.clear()  # resuming a 3-seed sweep over a committed 2-seed summary: round 1 is passed over, not rewritten
    written.clear()  # and fixed 0.5's own summary (the domain-shift command's), already at 3 seeds, is left as it is
    (tmp_path / "experiments" / "alpha-sweep-b-t-to-e.json").write_text(json.dumps({"meta": {"seeds": 2}}))
    (tmp_path / "experiments" / "domain-shift-b-t-to-e.json").write_text(json.dumps({"meta": {"seeds": 3}}))
    sweep.run_alpha_sweep(seeds=3, results_root=tmp_path, base="b", train="t", evaluate="e", max_steps=60,
                          data_dir=None)  # fmt: skip
    assert rounds == [2, 3]
    assert len(written) == len(hybrids) - 1 and all(stem != "domain-shift-b-t-to-e" for stem, _ in written)


def test_both_experiment_commands_refuse_one_suite_for_training_and_evaluation(tmp_path):
    """The shared options reach both commands, and bad input is one line, exit 2."""
    from conftest import run_cli
    from test_cli import one_line_error

    for command in ("domain-shift", "alpha-sweep"):
        proc = run_cli("experiment", command, "--train", "xquad-r", "--eval", "xquad-r", "--results-dir",
                       str(tmp_path), "--quiet")  # fmt: skip
        one_line_error(proc, "--train and --eval are the same suite")
    assert not any(tmp_path.rglob("*.json"))


def test_unseen_languages_get_a_column_and_their_own_question_level_test(monkeypatch, tmp_path):
    """Query languages never trained on: their multilingual AP per configuration (mean ± std over seeds) and a
    question-level comparison with fixed 0.5 on their queries alone; "beats" still rests on all queries."""
    summaries = _case(monkeypatch)
    summaries["alpha=0.5"]["meta"] = {"unseen_languages": ["l2"]}
    for summary in summaries.values():
        for row in summary["rows"]:
            if row["setting"] == "multilingual":
                row["unseen_mAP"] = row["mAP"] - 0.1
    suite = _suite()
    for i, query in enumerate(suite.queries):
        query.language = f"l{i % LANGS}"
    result = sweep.summarise_sweep(summaries, tmp_path, suite, resamples=500)
    assert result["unseen_languages"] == ["l2"]
    assert result["table"]["alpha=0.25"]["unseen"]["mean"] == pytest.approx(0.3505)
    unseen = result["comparisons_vs_baseline"]["alpha=0.25"]["unseen_multilingual_AP"]
    assert unseen["mean_difference"] == pytest.approx(0.05) and unseen["queries"] == QUESTIONS
    assert unseen["units"] == QUESTIONS and unseen["significant"] and "p_holm" in unseen
    assert result["comparisons_vs_baseline"]["alpha=0.25"]["beats_baseline"]
    text = sweep.render_sweep(result, {"base": "b", "train": "t", "eval": "e", "seeds": 4, "max_steps": 60,
                                       "batch_size": 32, "trainer_version": 3})  # fmt: skip
    assert "| lang_pref@1 | multilingual mAP, unseen (l2) |\n|---|---|---|---|---|---|---|\n" in text
    assert "| alpha=0.25 | 4 | 0.6005 ± 0.0021 | 0.4505 ± 0.0021 | 280.0 ± 0.2 | 0.500 | 0.3505 ± 0.0021 |" in text
    assert "multilingual AP on unseen l2 +0.0500 [+0.0500, +0.0500], Holm p < 0.001" in text


def _fixed_records(slopes, seeds_missing=None):
    """One record per seed and configuration: multilingual = offset + slope * alpha exactly, with a per-seed slope
    and offset; the schedules get values that would wreck any fit they entered."""
    records = {}
    for config in sweep.SWEEP:
        rows = []
        for seed, slope in enumerate(slopes):
            if seeds_missing and (config.label, seed) in seeds_missing:
                continue
            value = 0.5 + 0.01 * seed + slope * config.alpha if config.schedule == "constant" else 99.0
            rows.append({"seed": seed, "model": f"{config.label}-s{seed}", "multilingual": value,
                         "monolingual": 0.7 - value / 10, "rank_distance": None})  # fmt: skip
        records[config.label] = rows
    return records


def test_alpha_trend_is_one_slope_per_seed_over_the_fixed_alphas():
    """Per-seed slopes -0.01, -0.02, -0.03 recovered exactly; their mean and t interval are the trend. The schedules
    are left out, a seed missing from one fixed alpha is dropped (not fitted on four points), and a measure with no
    values (rank distance here) is not reported."""
    trend = sweep.alpha_trend(_fixed_records([-0.01, -0.02, -0.03, -0.5], seeds_missing={("alpha=0.75", 3)}))
    multi = trend["multilingual"]
    assert multi["seeds"] == 3 and multi["mean"] == pytest.approx(-0.02)
    assert multi["alphas"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    half = 0.95 * np.sqrt(2 / (1 - 0.95**2)) * 0.01 / np.sqrt(3)  # t(0.975, 2 df) * s / sqrt(n), s = 0.01
    assert multi["ci95"] == pytest.approx([-0.02 - half, -0.02 + half])
    assert trend["monolingual"]["mean"] == pytest.approx(0.002)
    assert "rank_distance" not in trend
    text = "\n".join(sweep.beyond_the_question({"alpha_trend": trend}))
    assert text.startswith("- Trend over fixed alpha (0, 0.25, 0.5, 0.75, 1; post hoc: added in cd4d80f")
    assert "p unadjusted): change from alpha 0" in text
    assert f"over 3 seeds: multilingual mAP -0.0200 [{-0.02 - half:+.4f}, {-0.02 + half:+.4f}], t-test p =" in text


def test_order_effect_compares_rising_with_falling_and_is_labelled_exploratory():
    n = QUESTIONS * LANGS
    clusters = [q.group_id for q in _suite().queries]
    base = np.random.default_rng(1).uniform(0.2, 0.6, size=n)
    aps = {"rising 0->1": {"multilingual": base + 0.02, "monolingual": base},
           "falling 1->0": {"multilingual": base, "monolingual": base}}  # fmt: skip
    records = {label: [{"seed": s, "multilingual": 0.5 + (0.02 if label.startswith("rising") else 0) + 0.001 * s * s,
                        "rank_distance": 300.0 - (10 if label.startswith("rising") else 0) + s}
                       for s in range(3)] for label in aps}  # fmt: skip
    order = sweep.order_effect(records, aps, clusters, resamples=200)
    assert order["multilingual_AP"]["mean_difference"] == pytest.approx(0.02)
    assert order["multilingual_AP"]["ci95"] == pytest.approx([0.02, 0.02]) and order["multilingual_AP"]["units"] == 60
    assert order["monolingual_AP"]["mean_difference"] == pytest.approx(0.0)
    assert order["rank_distance_across_seeds"]["mean_difference"] == pytest.approx(-10.0)
    assert order["multilingual_across_seeds"]["t_p_value"] < 1e-6  # the same +0.02 in every seed
    line = sweep.beyond_the_question({"order": order})[0]
    assert line.startswith("- Order at equal share (exploratory: chosen after the first seeds were seen, p unadjusted")
    assert "rising 0->1 - falling 1->0: multilingual AP +0.0200 [+0.0200, +0.0200], p < 0.001" in line
    assert "rank distance across seeds -10.0, t-test p < 0.001" in line
    assert sweep.order_effect(records, {"rising 0->1": aps["rising 0->1"]}, clusters, 200) is None


def test_both_experiment_commands_hand_their_function_every_option_it_takes(tmp_path, monkeypatch):
    """The CLI's option plumbing (shared by domain-shift and alpha-sweep): each command calls its function with
    keyword arguments that ``domain_shift`` accepts, the shared ones (results, data, device, progress, command)
    included, and shows the summary it wrote. The functions are replaced, so nothing trains."""
    import inspect

    from click.testing import CliRunner

    from xlir_bench.cli import cli
    from xlir_bench.training import experiment, sweep

    accepted = set(inspect.signature(experiment.domain_shift).parameters)
    calls = {}

    def fake(name):
        def run(**kwargs):
            calls[name] = kwargs
            summary = tmp_path / f"{name}.md"
            summary.write_text(f"summary of {name}\n")
            return tmp_path / f"{name}.json", summary

        return run

    monkeypatch.setattr(experiment, "run_domain_shift", fake("domain-shift"))
    monkeypatch.setattr(sweep, "run_alpha_sweep", fake("alpha-sweep"))
    for command in ("domain-shift", "alpha-sweep"):
        got = CliRunner().invoke(cli, ["experiment", command, "--seeds", "3", "--max-steps", "7", "--results-dir",
                                       str(tmp_path), "--quiet"])  # fmt: skip
        assert got.exit_code == 0, got.output
        assert f"summary of {command}" in got.output
        kwargs = calls[command]
        assert set(kwargs) <= accepted, set(kwargs) - accepted
        assert {"results_root", "data_dir", "device", "precision", "progress", "command"} <= set(kwargs)
        chosen = (kwargs["seeds"], kwargs["max_steps"], kwargs["train"], kwargs["evaluate"])
        assert chosen == (3, 7, "mlqa-r", "xquad-r")
        assert ("alpha" in kwargs) == (command == "domain-shift")
