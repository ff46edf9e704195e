"""Suite loaders against the published LAReQA counts and an independent reading of the raw files."""

from __future__ import annotations

import json
import shutil

import ir_datasets
import numpy as np
import pytest
from conftest import DATA

from xlir_bench import suites
from xlir_bench.errors import XlirError
from xlir_bench.suites import download, irds

# google-research-datasets/lareqa README, "Dataset statistics": (questions, candidates) per language.
PUBLISHED = {
    "xquad-r": {
        "ar": (1190, 1222),
        "de": (1190, 1276),
        "el": (1190, 1234),
        "en": (1190, 1180),
        "es": (1190, 1215),
        "hi": (1190, 1244),
        "ru": (1190, 1219),
        "th": (1190, 852),
        "tr": (1190, 1167),
        "vi": (1190, 1209),
        "zh": (1190, 1196),
    },
    "mlqa-r": {
        "ar": (517, 2545),
        "de": (512, 2362),
        "en": (1148, 6264),
        "es": (500, 1787),
        "hi": (507, 2426),
        "vi": (511, 2828),
        "zh": (504, 2322),
    },
}


@pytest.mark.parametrize("name", ["xquad-r", "mlqa-r"])
def test_counts_match_published(name, request):
    data = request.getfixturevalue("xquad" if name == "xquad-r" else "mlqa")
    for lang, (questions, candidates) in PUBLISHED[name].items():
        assert len(data.query_ids_in(lang)) == questions, lang
        assert len(data.doc_ids_in(lang)) == candidates, lang
    assert data.notes["answer_outside_sentences"] == 0


def test_xquad_totals(xquad):
    assert len(xquad.docs) == 13014
    assert len({q.group_id for q in xquad.queries}) == 1190
    assert all(len(r) == 11 for r in xquad.rel_docs)  # 11-way parallel: one gold sentence per language


def test_mlqa_relevant_sets_follow_question_languages(mlqa):
    langs_of = {}
    for q in mlqa.queries:
        langs_of.setdefault(q.group_id, set()).add(q.language)
    for q, rel in zip(mlqa.queries, mlqa.rel_docs):
        assert {mlqa.docs[i].language for i in rel} == langs_of[q.group_id]
        assert 2 <= len(rel) <= 4


def test_ids_are_unique(xquad, mlqa):
    for data in (xquad, mlqa):
        assert len({d.doc_id for d in data.docs}) == len(data.docs)
        assert len({q.query_id for q in data.queries}) == len(data.queries)


@pytest.mark.parametrize("lang", ["en", "th", "zh", "tr"])
def test_gold_sentence_holds_the_answer(xquad, lang):
    """Independent reading: walk the raw JSON's precomputed `sentences` and check answer containment."""
    raw = json.loads((DATA / "xquad-r" / f"{lang}.json").read_text(encoding="utf-8"))
    gold_text = {}
    for article in raw["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                start, answer = qa["answers"][0]["answer_start"], qa["answers"][0]["text"]
                ((s, e),) = [(s, e) for s, e in para["sentence_breaks"] if s <= start < e]
                assert para["context"][start:].startswith(answer[: e - start])
                gold_text[qa["id"]] = para["context"][s:e]
    by_id = {d.doc_id: d for d in xquad.docs}
    for q, rel in zip(xquad.queries, xquad.rel_docs):
        if q.language == lang:
            same = [xquad.docs[i] for i in rel if xquad.docs[i].language == lang]
            assert len(same) == 1 and same[0].text == gold_text[q.group_id]
            assert same[0].text in by_id[same[0].doc_id].context


def test_duplicate_sentences_stay_separate_candidates(xquad):
    texts = [d.text for d in xquad.docs if d.language == "zh"]
    assert len(texts) - len(set(texts)) == 4  # kept, as the published candidate counts require


def test_unknown_suite_names_valid_ones():
    with pytest.raises(XlirError, match="unknown suite 'nope'; choose from xquad-r, mlqa-r, miracl, miracl:<lang"):
        suites.resolve(["nope"])
    assert suites.resolve(["all", "mlqa-r"]) == ["xquad-r", "mlqa-r"]


def test_missing_data_says_how_to_provide_it(tmp_path):
    with pytest.raises(XlirError, match="missing data file .*XLIR_BENCH_DATA"):
        suites.load("mlqa-r", tmp_path)


def test_checksum_mismatch_is_refused(tmp_path):
    shutil.copytree(DATA / "mlqa-r", tmp_path / "mlqa-r")
    target = tmp_path / "mlqa-r" / "de.json"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes().replace(b"Berlin", b"Berlim", 1))
    with pytest.raises(XlirError, match="checksum mismatch for .*de.json"):
        suites.load("mlqa-r", tmp_path)


def test_corrupt_json_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"paragraphs": [{"context": "x"}]}]}')
    from xlir_bench.suites.lareqa import _read_language

    with pytest.raises(XlirError, match="corrupt suite file .*bad.json: KeyError"):
        _read_language(bad, "en", [], [], {})


def test_download_verifies_and_places_file(tmp_path, monkeypatch):
    relpath = "mlqa-r/es.json"
    pinned = download.FILES[relpath]
    monkeypatch.setitem(download.FILES, relpath, download.RemoteFile(relpath, (DATA / relpath).as_uri(), pinned.md5))
    monkeypatch.delenv("XLIR_BENCH_DATA")
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path))
    path, md5 = download.fetch(relpath)
    assert path == tmp_path / "data" / relpath and md5 == pinned.md5
    assert path.read_bytes() == (DATA / relpath).read_bytes()


def test_download_with_wrong_checksum_leaves_nothing(tmp_path, monkeypatch):
    relpath = "mlqa-r/es.json"
    monkeypatch.setitem(download.FILES, relpath, download.RemoteFile(relpath, (DATA / relpath).as_uri(), "0" * 32))
    monkeypatch.delenv("XLIR_BENCH_DATA")
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path))
    with pytest.raises(XlirError, match="checksum mismatch"):
        download.fetch(relpath)
    assert not any(p.is_file() for p in (tmp_path / "data").rglob("*"))


def test_unreachable_download_says_how_to_provide_data(tmp_path, monkeypatch):
    relpath = "xquad-r/en.json"
    missing = (tmp_path / "nowhere.json").as_uri()
    monkeypatch.setitem(download.FILES, relpath, download.RemoteFile(relpath, missing, "0" * 32))
    monkeypatch.delenv("XLIR_BENCH_DATA")
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path))
    with pytest.raises(XlirError, match="could not download xquad-r/en.json .*set XLIR_BENCH_DATA"):
        download.fetch(relpath)


def test_pinned_md5s_match_shared_md5sums():
    if not (DATA / "MD5SUMS").is_file():
        pytest.skip("needs shared/data's MD5SUMS (an independent list); a cache copy is verified against the pins")
    listed = dict(line.split()[::-1] for line in (DATA / "MD5SUMS").read_text().splitlines() if line.strip())
    for relpath, remote in download.FILES.items():
        assert listed[f"./{relpath}"] == remote.md5


def test_ir_datasets_registration_round_trip(xquad):
    ids = irds.register(DATA)
    assert "xlir-bench/xquad-r" in ids and "xlir-bench/mlqa-r/hi" in ids
    assert irds.register(DATA) == ids  # idempotent
    th = ir_datasets.load("xlir-bench/xquad-r/th")
    assert th.docs_count() == 852
    assert sum(1 for _ in th.queries_iter()) == 1190
    assert all(r.doc_id.startswith("th-") for r in th.qrels_iter())
    full = irds.suite_from_dataset("xquad-r", ir_datasets.load("xlir-bench/xquad-r"), xquad.languages)
    assert full.docs == xquad.docs and full.queries == xquad.queries
    assert all(np.array_equal(a, b) for a, b in zip(full.rel_docs, xquad.rel_docs))
