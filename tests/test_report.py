"""The leaderboard report (issue 11): seeds collapse into mean ± sample std, best values in bold in every format,
sorting, a row per language, the cross-lingual matrix; all formats from the same records."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT

from xlir_bench import results
from xlir_bench.report import Report


@pytest.fixture(scope="module")
def seeded():
    """Three seeds of one trained configuration (copies of a real result with shifted numbers) plus bm25."""
    base = results.read_result(ROOT / "results" / "mlqa-r" / "e5-small.json")
    docs = []
    for seed, shift in ((0, 0.0), (1, 0.01), (2, 0.02)):
        doc = json.loads(json.dumps(base))
        doc["model"]["name"] = f"trained:ds-x-hybrid-s{seed}"
        doc["model"]["metadata"]["training"] = {"strategy": "hybrid", "alpha": 0.5, "data": "xquad-r", "seed": seed,
                                                "steps": 60}  # fmt: skip
        for block in doc["settings"].values():
            block["metrics"]["mAP"] += shift
        docs.append(doc)
    return [*docs, results.read_result(ROOT / "results" / "mlqa-r" / "bm25.json")]


def test_seeds_collapse_to_mean_and_sample_std(seeded):
    records = Report.from_results(seeded, setting="multilingual").records
    assert [r["model"] for r in records] == ["trained:ds-x-hybrid", "bm25"]
    hybrid = records[0]
    expected = [seeded[i]["settings"]["multilingual"]["metrics"]["mAP"] for i in range(3)]
    assert hybrid["mAP"] == pytest.approx(np.mean(expected)) and hybrid["seeds"] == 3
    assert hybrid["mAP std"] == pytest.approx(np.std(expected, ddof=1))
    assert hybrid["training"] == "hybrid a=0.5, xquad-r, seeds 0, 1, 2"
    assert len(Report.from_results(seeded, setting="multilingual", per_seed=True).records) == 4


def test_the_model_filter_takes_in_the_models_runs_with_options_and_its_seeds(seeded, tmp_path):
    """``--model e5-small`` used to show nothing to a user whose run is labelled ``e5-small[dtype=int8]`` (what
    dtype=auto gives on most CPUs), though ``compare e5-small`` finds it. The filter now takes in the model's runs
    with options and its configuration of seeds, not other models sharing a prefix; when nothing matches, the CLI
    names the models and suites there are."""
    from conftest import run_cli

    variant = json.loads(json.dumps(seeded[3]))
    variant["model"]["name"] = "bm25[k1=1.2]"
    other = json.loads(json.dumps(seeded[3]))
    other["model"]["name"] = "bm25x"
    docs = [*seeded, variant, other]
    shown = {r["model"] for r in Report.from_results(docs, setting="multilingual", model="bm25").records}
    assert shown == {"bm25", "bm25[k1=1.2]"}
    assert [r["model"] for r in Report.from_results(docs, model="trained:ds-x-hybrid").records] == [
        "trained:ds-x-hybrid"] * 3  # fmt: skip
    for doc in (variant, other):
        results.write_result(tmp_path, doc)
    proc = run_cli("leaderboard", "--results-dir", str(tmp_path), "--model", "bm2")
    assert proc.returncode == 0 and not proc.stdout.strip()
    assert "none match the filters: models there are bm25[k1=1.2], bm25x, on mlqa-r" in proc.stderr


def test_best_values_are_bold_in_every_format(seeded):
    report = Report.from_results(seeded, setting="multilingual")
    markdown = report.render("markdown")
    assert f"**{report.records[0]['mAP']:.4f} ± {report.records[0]['mAP std']:.4f}**" in markdown
    latex = report.render("latex")
    assert "\\textbf{" in latex and "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex
    assert "$\\pm$" in latex and "trained:ds-x-hybrid" in latex
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(report.rich_table())
    assert "±" in console.export_text()
    csv_text = report.render("csv")
    assert ",mAP,mAP std,R@1," in csv_text.splitlines()[0] and "**" not in csv_text
    assert json.loads(report.render("json"))[0]["seeds"] == 3


@pytest.mark.parametrize("width", [80, 100, 120])
def test_terminal_table_fits_the_width_and_never_cuts_a_number_or_a_label(seeded, width):
    """Every line fits ``width``; every number shown reads whole (no ellipsis); a label too long for the width gets
    a key whose legend line gives it in full (``...[dtype=int8]`` names the precision); constant columns move into
    the title; the measures that do not fit are named."""
    from rich.console import Console

    doc = json.loads(json.dumps(seeded[3]))
    doc["model"]["name"] = label = "trained:ds-e5-small-mlqa-r-hybrid-60st-a0.25[dtype=int8]"
    report = Report.from_results([doc, *seeded], setting="multilingual")
    console = Console(width=width, record=True)
    console.print(report.rich_table(width=width))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width and "…" not in text
    assert "multilingual" in text.splitlines()[0] and "│ multilingual" not in text  # in the title, not a column
    unfolded = " ".join(line.strip() for line in text.splitlines())
    assert label in unfolded.replace(" ", "") or label in text
    for record in report.records:
        assert f"{record['mAP']:.4f}" in text  # mAP is always shown, whole
    if width < 120:
        assert "not shown at this width:" in text


def test_a_wide_table_shows_every_measure(seeded):
    from xlir_bench.report.terminal import fit

    fitted = fit(Report.from_results(seeded, setting="multilingual"), 250)
    assert not fitted.left_out and "R@100" in fitted.columns and not fitted.legend


def test_your_result_and_the_reference_one_stay_apart_when_the_set_column_goes(seeded):
    """With --reference, your bm25 and the reference bm25 were two identical "bm25" rows once a narrow terminal
    dropped the set column (its legend could not say which was which). A label that occurs more than once then
    carries its set; a wide table keeps the column and the plain labels."""
    from xlir_bench.report.terminal import fit

    reference = json.loads(json.dumps(seeded[3]))
    reference["_reference"] = True
    report = Report.from_results([seeded[3], reference], setting="multilingual")
    narrow = fit(report, 68)
    assert "set" not in narrow.columns and [row[0] for row in narrow.rows] == ["bm25", "bm25 (reference)"]
    narrower = fit(report, 56)  # too narrow for the longer label: it gets a key, still apart
    assert [row[0] for row in narrower.rows] == ["bm25", "M1"] and "M1 = bm25 (reference)" in narrower.legend
    wide = fit(report, 250)
    assert "set" in wide.columns and [row[0] for row in wide.rows] == ["bm25", "bm25"]


def test_sort_and_lower_is_better(seeded):
    by_distance = Report.from_results(seeded, setting="multilingual", sort="rank_distance").records
    distances = [r["rank_distance"] for r in by_distance]
    assert distances == sorted(distances)


def test_rows_per_language_and_the_pair_matrix(seeded):
    by_language = Report.from_results(seeded[3:], by="language").records
    mono = [r for r in by_language if r["setting"] == "monolingual"]
    assert [r["language"] for r in mono] == ["ar", "de", "en", "es", "hi", "vi", "zh"]
    per_pair = seeded[3]["settings"]["cross-lingual"]["per_pair"]
    cross_de = next(r for r in by_language if r["setting"] == "cross-lingual" and r["language"] == "de")
    assert cross_de["mAP"] == pytest.approx(np.mean([v["mAP"] for k, v in per_pair.items() if k.startswith("de-")]))
    matrix = Report.from_results(seeded[3:], by="pair")
    assert matrix.columns[-7:] == ["ar", "de", "en", "es", "hi", "vi", "zh"] and "X" in matrix.columns
    row = next(r for r in matrix.records if r["X"] == "de")
    assert row["en"] == per_pair["de-en"]["mAP"] and "de" not in row
    from xlir_bench.report.terminal import fit

    # one model's matrix in a terminal: its name once, in the title, not on every row (it hid 6 of 11 columns)
    shown = fit(matrix, 100)
    assert shown.columns[0] == "X" and "model" not in shown.columns and shown.title.startswith("bm25")
    assert "model" in fit(Report.from_results(seeded, by="pair"), 200).columns  # several models: the rows' key


def test_any_ir_measures_measure_from_saved_runs(tmp_path):
    """`--measure P@5`: computed by ir-measures from the saved run, labelled with the run depth; AP stays the exact
    engine's column; a bad name or a missing run is one line."""
    import ir_measures
    from conftest import run_cli
    from test_cli import one_line_error

    root = tmp_path / "r"
    proc = run_cli("run", "--model", "bm25", "--suite", "mlqa-r", "--setting", "monolingual", "--measure", "P@5",
                   "--measure", "AP", "--run-depth", "20", "--results-dir", str(root), "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "P@5 (top-20 run)" in proc.stdout and "AP are exact over the full pool" in proc.stderr
    board = run_cli("leaderboard", "--results-dir", str(root), "--measure", "P@5", "--format", "json")
    (record,) = json.loads(board.stdout)
    run = root / "runs" / "mlqa-r" / "bm25"
    qrels = list(ir_measures.read_trec_qrels(str(run / "monolingual.qrels")))
    per_query = {m.query_id: m.value for m in ir_measures.iter_calc(
        [ir_measures.P @ 5], qrels, list(ir_measures.read_trec_run(str(run / "monolingual.run"))))}  # fmt: skip
    # aggregated as the exact columns are: per language (the groups file), then over languages
    groups = json.loads((run / "monolingual.groups.json").read_text())["groups"]
    assert sorted(groups) == ["ar", "de", "en", "es", "hi", "vi", "zh"]
    expected = np.mean([np.mean([per_query[q] for q in ids]) for ids in groups.values()])
    assert record["P@5 (top-20 run)"] == pytest.approx(expected, abs=1e-12)
    assert "mAP" in record and "AP" not in record
    one_line_error(run_cli("leaderboard", "--results-dir", str(root), "--measure", "Bogus@3"), "Bogus@3")
    one_line_error(run_cli("run", "--model", "bm25", "--measure", "Bogus@3", "--results-dir", str(root)), "Bogus@3")
    without = run_cli("leaderboard", "--reference", "--results-dir", str(tmp_path / "none"), "--suite", "xquad-r",
                      "--measure", "ERR@20", "--format", "json")  # fmt: skip
    assert without.returncode == 0 and "without a saved run" in without.stderr
    assert all(r["ERR@20"] is None for r in json.loads(without.stdout))


def test_the_report_compares_configurations_not_single_seeds():
    """The page's comparison takes the best configurations, each with all its seeds (as the leaderboard above it
    averages them), and only results scored by the best one's engine."""
    from xlir_bench.report.html import _best_configurations

    def doc(name, m, seed=None, engine="engine-1"):
        training = {"seed": seed, "strategy": "cross"} if seed is not None else None
        return {"model": {"name": name, "metadata": {"training": training} if training else {}}, "engine": engine,
                "settings": {"multilingual": {"metrics": {"mAP": m}}}}  # fmt: skip

    docs = [doc("cross-s0", 0.56, 0), doc("cross-s1", 0.55, 1), doc("hybrid-s0", 0.54, 0), doc("bm25", 0.09),
            doc("old", 0.60, engine=None)]  # fmt: skip
    got = _best_configurations(docs, 3)
    assert got[0][0] == "old" and len(got) == 1  # the best is a pre-engine result: only its kind is compared
    got = _best_configurations(docs[:4], 3)
    assert [(name, len(members)) for name, members in got] == [("cross", 2), ("hybrid", 1), ("bm25", 1)]


def test_per_model_plots_draw_configurations_and_keep_reference_results_apart():
    """The page's per-model pictures took the best single results, so three seeds of one configuration filled three
    of the four slots: they draw each configuration once, its per-pair and per-language mAP averaged over its
    seeds; and the user's result never pools with a reference result of the same label (nor in the comparison)."""
    from xlir_bench.report.html import _best_configurations, _ranked, _seed_mean

    def doc(name, pair_map, seed=None, reference=False):
        training = {"seed": seed, "strategy": "cross"} if seed is not None else None
        block = {"metrics": {"mAP": pair_map}, "per_pair": {"de-en": {"mAP": pair_map}, "en-de": {"mAP": 0.5}},
                 "per_language": {"de": {"mAP": pair_map}}}  # fmt: skip
        out = {"model": {"name": name, "metadata": {"training": training} if training else {}}, "engine": "e",
               "suite": {"name": "toy"}, "settings": {"multilingual": block, "cross-lingual": block}}  # fmt: skip
        return {**out, "_reference": True} if reference else out

    docs = [doc("cross-s0", 0.6, 0), doc("cross-s1", 0.5, 1), doc("cross-s2", 0.4, 2), doc("bm25", 0.3),
            doc("bm25", 0.2, reference=True), doc("nano", 0.1, reference=True)]  # fmt: skip
    ranked = _ranked(docs)
    assert [(name, len(members)) for name, members in ranked] == [
        ("cross", 3),
        ("bm25", 1),
        ("bm25 (reference)", 1),
        ("nano", 1),
    ]
    drawn = _seed_mean(*ranked[0])
    assert drawn["model"]["name"] == "cross (mean of 3 seeds)"
    pairs = drawn["settings"]["cross-lingual"]["per_pair"]
    assert pairs == {"de-en": {"mAP": pytest.approx(0.5)}, "en-de": {"mAP": 0.5}}
    assert drawn["settings"]["multilingual"]["per_language"] == {"de": {"mAP": pytest.approx(0.5)}}
    assert _seed_mean(*ranked[2])["model"]["name"] == "bm25 (reference)"
    assert [name for name, _ in _best_configurations(docs, 4)] == ["cross", "bm25", "bm25 (reference)", "nano"]


def test_a_comparison_with_confirmatory_configurations_says_it_is_not_their_registered_analysis():
    from xlir_bench.report.html import _comparison_markdown, _confirmatory_note

    def doc(command):
        return {"provenance": {"command": command}}

    confirm = "xlir-bench experiment confirmatory --results-dir results"
    top = [("hybrid", [doc(confirm), doc(confirm)]), ("bm25", [doc("xlir-bench run --model bm25")])]
    note = _confirmatory_note(top)
    assert "hybrid (2 seeds in): of the pre-registered confirmatory run" in note and "bm25" not in note
    assert "descriptive, not its registered analysis" in note
    assert _confirmatory_note(top[1:]) == ""

    from xlir_bench.compare import Comparison

    row = Comparison("a|b", "c", 0.5, 0.4, 0.1, (0.05, 0.15), 0.001, 0.002, 0.3, 1190, 13090, (1, 1), None, None)
    table = _comparison_markdown([row]).splitlines()
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in (table[0], table[2])]
    assert cells[0][:3] == ["A", "B", "A - B"] and cells[1][:4] == ["a\\|b", "c", "+0.1000", "[+0.0500, +0.1500]"]
