"""Atomic result writing: a failure mid-write leaves the previous file as it was."""

from __future__ import annotations

import json

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


def test_dumps_result_round_trips():
    doc = {
        "schema_version": 1,
        "model": {"name": "m"},
        "suite": {"name": "s"},
        "settings": {},
        "per_query": {"AP": [0.5, None]},
    }
    assert json.loads(results.dumps_result(doc)) == doc


def test_slug():
    assert results.slug("hf:org/model name") == "hf_org_model_name"


def test_experiment_and_run_folders_are_not_results(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "summary.json").write_text('{"meta": {}}')
    (tmp_path / "xquad-r").mkdir()
    (tmp_path / "xquad-r" / "bad.json").write_text("{")
    loaded = results.load_results(tmp_path)
    assert loaded.results == [] and len(loaded.warnings) == 1 and "bad.json" in loaded.warnings[0]
