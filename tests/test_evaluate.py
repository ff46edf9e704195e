"""The three settings, end to end on real data, against ir-measures and an independent LAReQA implementation."""

from __future__ import annotations

import json

import ir_measures
import numpy as np
import pytest
from conftest import DATA

from xlir_bench.plugins import from_object, load_model
from xlir_bench.runner import evaluate, save_runs
from xlir_bench.suites.records import SuiteData


def subset(data: SuiteData, languages: list[str], groups: int) -> SuiteData:
    """Real slice: all candidates of ``languages``, the queries of the first ``groups`` questions."""
    keep_groups = {q.group_id for q in data.queries[: groups * 3]}
    keep_groups = set(sorted(keep_groups)[:groups])
    docs = [d for d in data.docs if d.language in languages]
    queries = [q for q in data.queries if q.language in languages and q.group_id in keep_groups]
    doc_ids = {d.doc_id for d in docs}
    qrels = [r for r in data.qrels_iter() if r.doc_id in doc_ids and r.query_id in {q.query_id for q in queries}]
    return SuiteData.from_records(data.name, languages, docs, queries, qrels)


@pytest.fixture(scope="module")
def bm25_slice(xquad, tmp_path_factory):
    """bm25 (ties everywhere in the cross-lingual setting) on en/de/th, runs saved at full pool depth."""
    data = subset(xquad, ["en", "de", "th"], groups=60)
    model = load_model("bm25", device="cpu")
    result, outcome = evaluate(model, data, device="cpu", batch_size=8, run_depth=len(data.docs), use_cache=False)
    root = tmp_path_factory.mktemp("runs")
    save_runs(root, model, data.name, outcome)
    return data, result, root / "runs" / "xquad-r" / "bm25"


@pytest.mark.parametrize("setting", ["monolingual", "cross-lingual", "multilingual"])
def test_saved_full_runs_give_the_same_numbers_in_ir_measures(bm25_slice, setting):
    data, result, folder = bm25_slice
    qrels = list(ir_measures.read_trec_qrels(str(folder / f"{setting}.qrels")))
    run = list(ir_measures.read_trec_run(str(folder / f"{setting}.run")))
    measures = [ir_measures.AP, ir_measures.R @ 1, ir_measures.R @ 10, ir_measures.nDCG @ 10, ir_measures.RR]
    values: dict = {}
    for m in ir_measures.pytrec_eval.iter_calc(measures, qrels, run):
        values.setdefault(str(m.measure), {})[m.query_id] = m.value
    ours = result["settings"][setting]
    names = {"AP": "mAP", "R@1": "R@1", "R@10": "R@10", "nDCG@10": "nDCG@10", "RR": "MRR"}
    if setting == "multilingual":
        for ir_name, name in names.items():
            assert ours["metrics"][name] == pytest.approx(np.mean(list(values[ir_name].values())), abs=1e-12)
    elif setting == "monolingual":
        for lang in data.languages:
            for ir_name, name in names.items():
                expected = np.mean([v for q, v in values[ir_name].items() if q.startswith(lang + "-")])
                assert ours["per_language"][lang][name] == pytest.approx(expected, abs=1e-12)
    else:
        for pair, got in ours["per_pair"].items():
            target = pair.split("-")[1]
            source = pair.split("-")[0]
            for ir_name, name in names.items():
                expected = np.mean(
                    [v for q, v in values[ir_name].items() if q.endswith("@" + target) and q.startswith(source + "-")]
                )
                assert got[name] == pytest.approx(expected, abs=1e-12), (pair, name)


def test_per_query_ap_is_stored_for_every_evaluated_query(bm25_slice):
    data, result, _ = bm25_slice
    per_query = result["per_query"]
    assert per_query["query_ids"] == [q.query_id for q in data.queries]
    multi = per_query["AP"]["multilingual"]
    assert None not in multi and np.mean(multi) == pytest.approx(
        result["settings"]["multilingual"]["metrics"]["mAP"], abs=1e-6
    )
    cross = per_query["AP"]["cross-lingual"]
    for i, q in enumerate(data.queries):
        assert cross[q.language][i] is None  # a query is never cross-lingual against its own language
    json.dumps(result, allow_nan=False)


def lareqa_reference(raw_dir, languages, query_vecs, doc_vecs):
    """An independent LAReQA multilingual mAP: rebuild candidates from the raw files, rank with a full sort.

    ``query_vecs[lang]`` / ``doc_vecs[lang]`` hold the embeddings in file order (questions / sentences); scores
    are dot products in float64 (exact for the integer vectors used). Ties go to the larger candidate id, the
    documented trec_eval rule, with ids rebuilt here from their documented form.
    """
    candidates, answers, q_rows = [], {}, []
    for lang in languages:
        raw = json.loads((raw_dir / f"{lang}.json").read_text(encoding="utf-8"))
        q_no = para_no = 0
        for article in raw["data"]:
            for para in article["paragraphs"]:
                first = len(candidates)
                for sent_no, _ in enumerate(para["sentence_breaks"]):
                    candidates.append(f"{lang}-{para_no:04d}-{sent_no:02d}")
                para_no += 1
                for qa in para["qas"]:
                    start = qa["answers"][0]["answer_start"]
                    idx = next(i for i, (s, e) in enumerate(para["sentence_breaks"]) if s <= start < e)
                    answers.setdefault(qa["id"], set()).add(first + idx)
                    q_rows.append((lang, q_no, qa["id"]))
                    q_no += 1
    docs = np.concatenate([doc_vecs[lang] for lang in languages]).astype(np.float64)
    id_rank = np.argsort(np.argsort(np.array(candidates)))  # ascending position of each id
    aps = {}
    for lang, q_no, qid in q_rows:
        scores = docs @ query_vecs[lang][q_no].astype(np.float64)
        order = np.lexsort((-id_rank, -scores))
        hits = np.isin(order, sorted(answers[qid]))
        ranks = np.flatnonzero(hits) + 1
        aps[f"{lang}-{qid}"] = np.mean(np.arange(1, len(ranks) + 1) / ranks)
    return aps


def test_multilingual_map_matches_independent_lareqa_implementation(xquad, with_fake_plugins):
    languages = ["en", "th", "zh"]
    data = subset(xquad, languages, groups=1190)
    model = load_model("random", device="cpu", options={"seed": 3, "dim": 8, "integer": True})
    calls = {"queries": {}, "corpus": {}}
    original_q, original_d = model.plugin.encode_queries, model.plugin.encode_corpus

    def spy_q(texts, *, language, batch_size):
        out = original_q(texts, language=language, batch_size=batch_size)
        calls["queries"].setdefault(language, []).append(out)
        return out

    def spy_d(docs, *, language, batch_size):
        out = original_d(docs, language=language, batch_size=batch_size)
        calls["corpus"].setdefault(language, []).append(out)
        return out

    model.plugin.encode_queries, model.plugin.encode_corpus = spy_q, spy_d
    result, outcome = evaluate(model, data, device="cpu", batch_size=16, settings=("multilingual",), use_cache=False)
    ours = result["settings"]["multilingual"]
    per_query = outcome.values_of("multilingual")
    qvecs = {lang: np.concatenate(v).astype(np.float32) for lang, v in calls["queries"].items()}
    dvecs = {lang: np.concatenate(v).astype(np.float32) for lang, v in calls["corpus"].items()}
    reference = lareqa_reference(DATA / "xquad-r", languages, qvecs, dvecs)
    got = dict(zip([q.query_id for q in data.queries], per_query))
    assert set(got) == set(reference)
    np.testing.assert_allclose([got[k] for k in reference], list(reference.values()), rtol=0, atol=1e-12)
    assert ours["metrics"]["mAP"] == pytest.approx(np.mean(list(reference.values())), abs=1e-12)


def test_language_bias_by_hand():
    """Two languages, one question: hand-made scores give known rank distance, preference and top-1 cell."""
    from xlir_bench.suites.records import SuiteDoc, SuiteQrel, SuiteQuery

    docs = [SuiteDoc(f"{lang}-{i}", f"{lang}{i}", "", "", lang) for lang in ("en", "de") for i in range(3)]
    queries = [SuiteQuery("en-q", "q", "en", "q"), SuiteQuery("de-q", "q", "de", "q")]
    qrels = [SuiteQrel(q, d, 1) for q in ("en-q", "de-q") for d in ("en-0", "de-0")]
    data = SuiteData.from_records("toy", ["en", "de"], docs, queries, qrels)

    # en query: en-1 (irrelevant, en) first, en-0 second, de-0 last -> distance 4
    # de query: de-0 first, en-0 second -> distance 1
    table = {"q": {"en": [5, 6, 1, 0, 2, 3], "de": [4, 0, 0, 5, 1, 2]}}
    result, _ = evaluate(fixed_scores(table), data, device="cpu", batch_size=8, settings=("multilingual",))
    multi = result["settings"]["multilingual"]
    assert multi["per_language"]["en"]["rank_distance"] == 4
    assert multi["per_language"]["de"]["rank_distance"] == 1
    assert multi["bias"]["rank_distance"] == 2.5
    assert multi["bias"]["lang_pref@1"] == 1.0
    assert multi["bias"]["top1"] == {
        "relevant_same": 0.5,
        "relevant_other": 0.0,
        "irrelevant_same": 0.5,
        "irrelevant_other": 0.0,
    }


def fixed_scores(table: dict[str, dict[str, list[float]]]):
    """A retriever whose score of (query text, language) against the pool of all docs is ``table[text][lang]``."""

    class Index:
        def __init__(self, docs):
            self.docs = docs

        def score(self, queries, *, language):
            return np.array([table[q][language] for q in queries], dtype=np.float32)

    class Fixed:
        def build_index(self, docs):
            return Index(docs)

    return from_object(Fixed(), "fixed", "tests:Fixed")


@pytest.mark.parametrize("setting", ["monolingual", "cross-lingual", "multilingual"])
def test_compare_takes_per_query_measures_from_saved_runs_exactly(bm25_slice, setting, tmp_path):
    """`compare --metric nDCG@10`: per-query values from the saved run, aligned with the result's units (NaN where
    its AP is), aggregating to the engine's exact full-pool values; a cutoff deeper than the run is refused, and so
    is a measure without one, since neither would be exact."""
    from xlir_bench.compare import per_query_values
    from xlir_bench.errors import XlirError

    data, result, folder = bm25_slice
    root = folder.parents[2]  # <root>/runs/xquad-r/bm25
    ids, ap = per_query_values(result, setting)
    got_ids, ndcg = per_query_values(result, setting, "nDCG@10", root)
    assert got_ids == ids and np.array_equal(np.isnan(ndcg), np.isnan(ap))
    by_id = dict(zip(ids, ndcg))
    ours = result["settings"][setting]
    if setting == "multilingual":
        assert ours["metrics"]["nDCG@10"] == pytest.approx(np.nanmean(ndcg), abs=1e-12)
    elif setting == "monolingual":
        for lang in data.languages:
            mean = np.nanmean([v for q, v in by_id.items() if q.startswith(lang + "-")])
            assert ours["per_language"][lang]["nDCG@10"] == pytest.approx(mean, abs=1e-12)
    else:
        for pair, block in ours["per_pair"].items():
            source, target = pair.split("-")
            mean = np.nanmean([v for q, v in by_id.items() if q.startswith(source + "-") and q.endswith("@" + target)])
            assert block["nDCG@10"] == pytest.approx(mean, abs=1e-12), pair

    short = tmp_path / "runs" / "xquad-r" / "bm25"  # the same run cut at depth 5
    short.mkdir(parents=True)
    kept: dict[str, int] = {}
    with open(short / f"{setting}.run", "w") as out:
        for line in (folder / f"{setting}.run").read_text().splitlines():
            qid = line.split(" ", 1)[0]
            kept[qid] = kept.get(qid, 0) + 1
            if kept[qid] <= 5:
                out.write(line + "\n")
    (short / f"{setting}.qrels").write_text((folder / f"{setting}.qrels").read_text())
    assert per_query_values(result, setting, "P@5", tmp_path)[0] == ids
    for metric in ("nDCG@10", "RR"):
        deeper = f"--metric {metric}: needs a cutoff no deeper than the saved run .*\\(5\\)"
        with pytest.raises(XlirError, match=deeper):
            per_query_values(result, setting, metric, tmp_path)
    with pytest.raises(XlirError, match="no saved .* run of 'bm25' on xquad-r .* --save-run"):
        per_query_values(result, setting, "nDCG@10", tmp_path / "nothing")
