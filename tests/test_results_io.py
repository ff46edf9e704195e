"""Atomic result writing: a failure mid-write leaves the previous file as it was."""

from __future__ import annotations

import base64
import json
import zlib

import pytest

from xlir_bench import results


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "x.json"
    results.write_atomic(path, "old\n")

    def chunks():
        yield "partial"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        results.write_atomic(path, chunks())
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def _doc(per_query) -> dict:
    return {
        "schema_version": results.SCHEMA_VERSION,
        "model": {"name": "m"},
        "suite": {"name": "s"},
        "settings": {"multilingual": {"metrics": {"mAP": 0.5}}},
        "per_query": per_query,
    }


def test_result_round_trips_with_per_query_packed(tmp_path):
    # floats that need all 17 digits, nulls, unicode ids: the packed member gives back exactly what was written
    per_query = {"query_ids": ["ü-1", "zh-2"], "AP": {"multilingual": [0.1 + 0.2, None, 1 / 3]}}
    doc = _doc(per_query)
    text = results.dumps_result(doc)
    on_disk = json.loads(text)
    assert set(on_disk["per_query"]) == {results.PACKED}  # packed, not plain
    path = tmp_path / "s" / "m.json"
    results.write_atomic(path, text)
    assert results.read_result(path) == doc
    assert results.dumps_result(doc) == text  # same numbers, same bytes (no timestamp in the stream)


def test_version_1_plain_per_query_is_read_as_current(tmp_path):
    doc = _doc({"query_ids": ["a"], "AP": {"multilingual": [0.25]}})
    path = tmp_path / "s" / "m.json"
    results.write_atomic(path, json.dumps({**doc, "schema_version": 1}))
    assert results.read_result(path) == doc


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("packed", "problem"),
    [
        ("not base64!", "base64"),
        (_b64(zlib.compress(b"hello")), "Expecting value"),  # inflates, but not to JSON
        (_b64(zlib.compress(b'{"AP": {}}')[:-4]), "truncated"),  # the stream's checksum is cut off
        (_b64(b"\x00" * 40), "decompressing"),
    ],
)
def test_damaged_packed_per_query_is_a_named_problem(tmp_path, packed, problem):
    path = tmp_path / "s" / "m.json"
    results.write_atomic(path, json.dumps(_doc({results.PACKED: packed})))
    with pytest.raises(ValueError, match=f"per_query cannot be unpacked .*({problem})"):
        results.read_result(path)
    loaded = results.load_results(tmp_path)
    assert loaded.results == [] and "per_query cannot be unpacked" in loaded.warnings[0]


def test_summaries_alone_leave_the_per_query_values_unread(tmp_path):
    # a leaderboard reads the summaries only: the same document less per_query, and damaged per-query values
    # (which compare and report skip with a warning) do not hide valid summary measures from it
    doc = _doc({"query_ids": ["a"], "AP": {"multilingual": [0.25]}})
    results.write_atomic(tmp_path / "s" / "m.json", results.dumps_result(doc))
    results.write_atomic(tmp_path / "s" / "bad.json", json.dumps(_doc({results.PACKED: "not base64!"})))
    summaries = results.load_results(tmp_path, per_query=False)
    assert summaries.warnings == []
    assert [{k: v for k, v in d.items() if k != "_path"} for d in summaries.results] == [
        {k: v for k, v in doc.items() if k != "per_query"}
    ] * 2
    full = results.load_results(tmp_path)
    assert [d["per_query"] for d in full.results] == [doc["per_query"]] and "bad.json" in full.warnings[0]


def test_newer_schema_is_refused_by_name(tmp_path):
    path = tmp_path / "s" / "m.json"
    results.write_atomic(path, json.dumps({**_doc({}), "schema_version": 3}))
    with pytest.raises(ValueError, match="schema_version 3 .*newer xlir-bench"):
        results.read_result(path)


def test_slug():
    assert results.slug("hf:org/model name") == "hf_org_model_name"


def test_experiment_and_run_folders_are_not_results(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "summary.json").write_text('{"meta": {}}')
    (tmp_path / "xquad-r").mkdir()
    (tmp_path / "xquad-r" / "bad.json").write_text("{")
    loaded = results.load_results(tmp_path)
    assert loaded.results == [] and len(loaded.warnings) == 1 and "bad.json" in loaded.warnings[0]


def test_results_name_the_source_commit_and_whether_it_was_modified(tmp_path):
    """The version number does not change between commits: a result made from a checkout records the commit and
    whether the package's tracked files differed from it; an installed copy (no checkout) records nothing."""
    import subprocess

    from xlir_bench import provenance

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t", *args], check=True,
                       capture_output=True)  # fmt: skip

    assert provenance.revision_of(tmp_path) is None
    (tmp_path / "xlir_bench").mkdir()
    (tmp_path / "xlir_bench" / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "c")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert provenance.revision_of(tmp_path) == {"commit": head.strip(), "modified": False}
    (tmp_path / "notes.txt").write_text("outside the package")
    (tmp_path / "xlir_bench" / "new.py").write_text("untracked")
    assert provenance.revision_of(tmp_path)["modified"] is False
    (tmp_path / "xlir_bench" / "a.py").write_text("x = 2\n")
    assert provenance.revision_of(tmp_path)["modified"] is True


def test_a_source_that_changed_during_the_run_is_recorded_beside_the_start(tmp_path, monkeypatch):
    """The CLI reads the commit at start; an experiment that runs for hours while the package's code changes imports
    some modules later, from the newer code. The result names both; commits of results or docs alone do not count."""
    import subprocess

    from xlir_bench import provenance

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t", *args], check=True,
                       capture_output=True)  # fmt: skip

    (tmp_path / "xlir_bench").mkdir()
    (tmp_path / "xlir_bench" / "a.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    start = provenance.revision_of(tmp_path)
    monkeypatch.setattr(provenance, "source_revision", lambda: start)
    monkeypatch.setattr(provenance, "__file__", str(tmp_path / "xlir_bench" / "provenance.py"))
    assert provenance.source_record() == start
    (tmp_path / "results.json").write_text("{}")  # a result committed while the run goes on: not a code change
    git("add", ".")
    git("commit", "-qm", "a result")
    assert provenance.source_record() == start
    (tmp_path / "xlir_bench" / "a.py").write_text("x = 2\n")  # an edit to the package
    assert provenance.source_record()["changed_during_run"]["modified"] is True
    git("commit", "-qam", "code")
    changed = provenance.source_record()["changed_during_run"]
    assert changed == provenance.revision_of(tmp_path) and changed["commit"] != start["commit"]
    monkeypatch.setattr(provenance, "source_revision", lambda: None)  # an installed copy: nothing
    assert provenance.source_record() is None
