"""A result names exactly the corpus it was computed on (MIRACL fixture corpora, the one vector store)."""

from __future__ import annotations

import gzip
import os

import pytest
from conftest import DATA, run_cli
from miracl_fixture import write_corpus

from xlir_bench import plugins, results
from xlir_bench.errors import XlirError
from xlir_bench.runner import evaluate
from xlir_bench.suites.miracl import load as load_miracl


@pytest.fixture()
def corpus(tmp_path):
    write_corpus(DATA, tmp_path / "data", "yo", distractors=80, seed=5)
    return tmp_path / "data"


def _files(folder):
    return sorted((folder / "miracl" / "yo" / "corpus").glob("docs-*"))


def _swap_text_keep_size_and_mtime(path):
    """Another corpus in the same file: every passage's text reversed (same bytes, same size), mtime restored."""
    stat = path.stat()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    import json

    swapped = []
    for line in lines:
        doc = json.loads(line)
        doc["text"] = doc["text"][::-1]
        swapped.append(json.dumps(doc, ensure_ascii=False))
    with opener(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(swapped) + "\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_vectors_follow_the_corpus_content_not_its_path_size_or_mtime(corpus, with_fake_plugins, tmp_path):
    """A corpus file replaced by another of the same size and mtime used to reuse the old shards (mAP 0.5651
    reported, 0.0050 true) while the result recorded the new md5."""
    model = plugins.load_model("hashgram", device="cpu")
    first, _ = evaluate(model, load_miracl(("yo",), corpus), device="cpu", batch_size=16)
    for path in _files(corpus):
        _swap_text_keep_size_and_mtime(path)
    second, _ = evaluate(model, load_miracl(("yo",), corpus), device="cpu", batch_size=16)
    fresh, _ = evaluate(model, load_miracl(("yo",), corpus), device="cpu", batch_size=16, use_cache=False)
    assert second["suite"]["corpus"] != first["suite"]["corpus"]
    assert second["settings"] == fresh["settings"] != first["settings"]


def test_a_partial_rerun_on_another_corpus_keeps_nothing_of_the_first(corpus, tmp_path):
    env = {"XLIR_BENCH_DATA": str(corpus)}
    common = ["run", "--model", "bm25", "--suite", "miracl:yo", "--results-dir", str(tmp_path / "r"), "--quiet"]
    assert run_cli(*common, env_extra=env).returncode == 0
    for path in _files(corpus):
        _swap_text_keep_size_and_mtime(path)
    again = run_cli(*common, "--setting", "monolingual", env_extra=env)
    assert again.returncode == 0, again.stderr
    assert "were for another model version or data and are dropped" in " ".join(again.stderr.split())
    doc = results.read_result(tmp_path / "r" / "miracl_yo" / "bm25.json")
    assert list(doc["settings"]) == ["monolingual"] and "carried_over" not in doc["provenance"]


def test_bad_index_limit_and_unwritable_run_folder_are_one_line_before_any_work(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_BENCH_MAX_INDEX_PASSAGES", "abc")
    with pytest.raises(XlirError, match="XLIR_BENCH_MAX_INDEX_PASSAGES='abc' is not a whole number"):
        evaluate(plugins.load_model("bm25", device="cpu"), load_miracl(("yo",), corpus), device="cpu", batch_size=8)
    monkeypatch.delenv("XLIR_BENCH_MAX_INDEX_PASSAGES")
    blocker = tmp_path / "r" / "runs"
    blocker.parent.mkdir()
    blocker.write_text("a file where the run folder goes")
    done = run_cli("run", "--model", "bm25", "--suite", "miracl:yo", "--results-dir", str(tmp_path / "r"),
                   "--save-run", env_extra={"XLIR_BENCH_DATA": str(corpus)})  # fmt: skip
    assert done.returncode == 2 and "not writable" in done.stderr
    assert not list((tmp_path / "r").rglob("*.json"))  # refused before the compute, nothing written


def test_an_internal_error_with_markup_in_its_text_prints_as_text(monkeypatch, capsys):
    """gloo's errors contain ``[/__w/pytorch/...]``: fed to rich markup the printer itself crashed."""
    from xlir_bench import cli

    def boom(**_):
        raise RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/pair.cc:553] Connection closed by peer")

    monkeypatch.setattr(cli.cli, "main", boom)
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 1
    assert "[/__w/pytorch/pytorch/third_party/gloo/pair.cc:553]" in capsys.readouterr().err
