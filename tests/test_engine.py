"""The one engine: the defects of the two-engine harness, each pinned by a test on small in-memory suites.

Fast: every suite here is built in memory (a few hundred candidates), so this file is part of the default tier.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from xlir_bench.engine.data import from_lareqa
from xlir_bench.engine.pools import plan
from xlir_bench.metrics.stream import canonical_scores
from xlir_bench.plugins import from_object, load_model
from xlir_bench.runner import evaluate
from xlir_bench.suites.records import SuiteData, SuiteDoc, SuiteQrel, SuiteQuery

LANGS = ("en", "de", "th")


class Table:
    """A dense plugin with a fixed vector per text (so identical texts get identical vectors, as any encoder)."""

    similarity = "dot"

    def __init__(self, vectors: dict[str, np.ndarray], revision: str | None = "fixed") -> None:
        self.vectors, self.calls = vectors, {"queries": 0, "corpus": 0}
        self.metadata = {"name": "table", **({"revision": revision} if revision else {})}

    def encode_queries(self, texts, *, language, batch_size):
        self.calls["queries"] += len(texts)
        return np.stack([self.vectors[t] for t in texts])

    def encode_corpus(self, docs, *, language, batch_size):
        self.calls["corpus"] += len(docs)
        return np.stack([self.vectors[d["text"]] for d in docs])


def parallel_suite(questions: int = 40, distractors: int = 30, duplicates: int = 20, dim: int = 384, seed: int = 0):
    """``questions`` questions in three languages, each with its gold sentence in every language, distractors, and
    ``duplicates`` sentences per language that repeat a gold sentence's text (a separate candidate, as in LAReQA),
    with float32 vectors whose matmul scores round differently with the block shape."""
    rng = np.random.default_rng(seed)
    vectors, docs, queries, qrels = {}, [], [], []
    for q in range(questions):
        base = rng.standard_normal(dim).astype(np.float32)
        for lang in LANGS:
            vectors[f"gold {q} {lang}"] = (base + 0.7 * rng.standard_normal(dim)).astype(np.float32)
            vectors[f"question {q} {lang}"] = (base + 0.9 * rng.standard_normal(dim)).astype(np.float32)
    for lang in LANGS:
        for q in range(questions):
            docs.append(SuiteDoc(f"{lang}-{q:04d}-00", f"gold {q} {lang}", "", "", lang))
            queries.append(SuiteQuery(f"{lang}-q{q}", f"question {q} {lang}", lang, f"q{q}"))
        for d in range(distractors):
            vectors[f"noise {d} {lang}"] = rng.standard_normal(dim).astype(np.float32)
            docs.append(SuiteDoc(f"{lang}-{1000 + d:04d}-00", f"noise {d} {lang}", "", "", lang))
        for d in range(duplicates):  # same text as a gold sentence; ids sort above and below the gold's
            prefix = "9" if d % 2 else "0"
            docs.append(SuiteDoc(f"{lang}-{prefix}{d:03d}-99", f"gold {d} {lang}", "", "", lang))
    for q in range(questions):
        for qlang in LANGS:
            qrels += [SuiteQrel(f"{qlang}-q{q}", f"{lang}-{q:04d}-00", 1) for lang in LANGS]
    return SuiteData.from_records("toy", list(LANGS), docs, queries, qrels), vectors


def canonical_ranks(data: SuiteData, vectors, query: int, pool_langs) -> dict[str, int]:
    """Ranks of the query's relevant docs in the pool from canonical scores and the trec_eval tie rule, by hand."""
    q = data.queries[query]
    pool = [d for d in data.docs if d.language in pool_langs]
    qv = vectors[q.text].astype(np.float64)
    norm_q = (qv / np.linalg.norm(qv)).astype(np.float32)
    mat = np.stack([vectors[d.text] for d in pool]).astype(np.float64)
    mat = (mat / np.linalg.norm(mat, axis=1, keepdims=True)).astype(np.float32)
    scores = canonical_scores(np.repeat(norm_q[None], len(pool), 0), mat)
    order = sorted(range(len(pool)), key=lambda i: (-scores[i], [-ord(c) for c in pool[i].doc_id]))
    rank = {pool[i].doc_id: r + 1 for r, i in enumerate(order)}
    return {d: rank[d] for d in data.qrels[q.query_id] if d in rank}


def test_duplicates_tie_exactly_and_ties_follow_the_id_rule_in_every_setting():
    """Identical candidates must score identically whatever block they are scored in, and be ordered by doc id
    descending; the old in-memory engine ranked raw float32 block products, whose rounding depends on the matmul's
    shape, so a duplicate could outrank the gold in one setting and not in another."""
    data, vectors = parallel_suite()
    plugin = Table(vectors)
    plugin.similarity = "cosine"
    result, outcome = evaluate(from_object(plugin, "table", "tests:Table"), data, device="cpu", batch_size=16,
                               run_depth=len(data.docs), use_cache=False)  # fmt: skip
    runs = outcome.runs()
    text = {d.doc_id: d.text for d in data.docs}
    for setting, rows in runs.items():
        for qid, docs, scores in rows:
            for (a, sa), (b, sb) in zip(zip(docs, scores), zip(docs[1:], scores[1:])):
                if text[a] == text[b]:
                    assert sa == sb and a > b, (setting, qid, a, b, sa, sb)
    for i in range(0, len(data.queries), 7):
        q = data.queries[i]
        want = canonical_ranks(data, {k: v for k, v in vectors.items()}, i, LANGS)
        got = dict(zip(*[x for x in next((d, s) for qid, d, s in runs["multilingual"] if qid == q.query_id)]))
        ranked = [d for qid, d, _ in runs["multilingual"] if qid == q.query_id][0]
        assert {d: ranked.index(d) + 1 for d in want} == want, q.query_id
        assert got  # the run holds the query


def test_bias_measures_have_one_definition_across_suites():
    """lang_pref@1 is the best-ranked relevant candidate's language on every suite; the share of top-1 passages in
    the query's language is top1_same_language (MIRACL used to call that lang_pref@1 in the same column)."""
    data, vectors = parallel_suite(questions=10, duplicates=0)
    result, _ = evaluate(from_object(Table(vectors), "table", "tests:Table"), data, device="cpu", batch_size=16,
                         settings=("multilingual",), use_cache=False)  # fmt: skip
    bias = result["settings"]["multilingual"]["bias"]
    assert set(bias) >= {"rank_distance", "rank_distance_queries", "lang_pref@1", "top1", "top1_same_language",
                         "other_language@10", "languages"}  # fmt: skip
    assert bias["rank_distance_queries"] == len(data.queries)
    top1 = bias["top1"]
    assert bias["top1_same_language"] == pytest.approx(top1["relevant_same"] + top1["irrelevant_same"])
    assert 0 <= bias["lang_pref@1"] <= 1


def test_pools_are_the_settings_and_a_repeated_pool_is_scored_once():
    data, _ = parallel_suite(questions=5, duplicates=0)
    suite = from_lareqa(data)
    pools = plan(suite.queries, suite.languages, ("monolingual", "cross-lingual", "multilingual"))
    assert [(p.setting, p.name) for p in pools] == [
        *[("monolingual", x) for x in LANGS],
        *[("cross-lingual", y) for y in LANGS],
        ("multilingual", "all"),
    ]
    assert all(p.same_as is None for p in pools)
    cross_en = pools[3]
    assert set(suite.queries.lang[cross_en.rows]) == {"de", "th"} and cross_en.in_pool.sum() == len(cross_en.rows)
    one = SuiteData.from_records(
        "one",
        ["en"],
        data.docs[:10],
        data.queries[:5],
        [r for r in data.qrels_iter() if r.doc_id in {d.doc_id for d in data.docs[:10]}],
    )
    single = from_lareqa(one)
    pools = plan(single.queries, single.languages, ("monolingual", "multilingual"))
    assert pools[1].same_as == 0  # the multilingual pool of a one-language suite is its monolingual pool


def test_a_one_language_suite_builds_one_retriever_index():
    """BM25 built its index twice for miracl:yo (monolingual, then the identical multilingual pool)."""
    data, _ = parallel_suite(questions=5, duplicates=0)
    one = SuiteData.from_records("one", ["en"], [d for d in data.docs if d.language == "en"],
                                 [q for q in data.queries if q.language == "en"],
                                 [r for r in data.qrels_iter() if r.doc_id.startswith("en-")])  # fmt: skip
    built = []

    class Index:
        def __init__(self, n):
            self.n = n

        def score(self, queries, *, language):
            return np.ones((len(queries), self.n), dtype=np.float32)

    class Retriever:
        def build_index(self, docs):
            built.append(len(docs))
            return Index(len(docs))

    result, _ = evaluate(from_object(Retriever(), "r", "tests:R"), one, device="cpu", batch_size=8,
                         settings=("monolingual", "multilingual"))  # fmt: skip
    assert built == [len(one.docs)]
    assert result["settings"]["monolingual"]["metrics"]["mAP"] == result["settings"]["multilingual"]["metrics"]["mAP"]


def test_unversioned_plugins_are_never_cached_on_any_suite(tmp_path, monkeypatch):
    """One cache rule: a plugin without a revision is encoded afresh every time (its weights cannot be told apart);
    MIRACL used to key such a plugin's shards by its label and reuse them."""
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path))
    data, vectors = parallel_suite(questions=5, duplicates=0)
    plugin = Table(vectors, revision=None)
    model = from_object(plugin, "table", "tests:Table")
    for _ in range(2):
        evaluate(model, data, device="cpu", batch_size=8, settings=("multilingual",))
    assert plugin.calls["corpus"] == 2 * len(data.docs)
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())
    versioned = Table(vectors)
    model = from_object(versioned, "table", "tests:Table")
    for _ in range(2):
        evaluate(model, data, device="cpu", batch_size=8, settings=("multilingual",))
    assert versioned.calls["corpus"] == len(data.docs)
    assert not list(tmp_path.glob("scratch/*"))  # scratch stores are removed


def test_no_cache_reads_nothing_stored(tmp_path, monkeypatch):
    """--no-cache promised "read and write no cached embeddings" but MIRACL reused finished shards."""
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path))
    data, vectors = parallel_suite(questions=5, duplicates=0)
    plugin = Table(vectors)
    model = from_object(plugin, "table", "tests:Table")
    evaluate(model, data, device="cpu", batch_size=8, settings=("multilingual",))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    evaluate(model, data, device="cpu", batch_size=8, settings=("multilingual",), use_cache=False)
    assert plugin.calls["corpus"] == 2 * len(data.docs)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()) == before


def test_runs_have_one_naming_and_measure_reads_them_on_every_suite(fake_plugin_path, tmp_path):
    """Runs are <setting>.run for every suite (MIRACL wrote monolingual-<lang>.run, so --measure left its column
    empty); --measure aggregates per language then over languages, as the exact columns do."""
    from conftest import DATA
    from miracl_fixture import write_corpus

    write_corpus(DATA, tmp_path / "data", "yo", distractors=60, seed=4)
    env = {"XLIR_BENCH_DATA": str(tmp_path / "data"), "PYTHONPATH": str(fake_plugin_path)}
    done = run_cli("run", "--model", "hash-int", "--suite", "miracl:yo", "--results-dir", str(tmp_path / "r"),
                   "--measure", "AP", "--measure", "P@5", "--run-depth", "1000", "--quiet", env_extra=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "r" / "runs" / "miracl_yo" / "hash-int"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{s}.{ext}" for s in ("monolingual", "multilingual") for ext in ("run", "qrels", "groups.json")
    )
    assert json.loads((folder / "monolingual.groups.json").read_text())["groups"].keys() == {"yo"}
    assert "no saved run" not in done.stderr
    from xlir_bench import measures

    values, notes = measures.extra_columns([json.loads((tmp_path / "r" / "miracl_yo" / "hash-int.json").read_text())],
                                           measures.parse(["P@5"]), tmp_path / "r")  # fmt: skip
    assert not notes and all(v["P@5 (top-1000 run)"] is not None for v in values.values())


def test_ties_are_decided_by_the_tie_rule_not_by_float32_rounding():
    """Candidates whose vectors are permutations of the gold's have exactly its score for a query with equal
    components, but a float32 dot product of each sums its terms in another order and rounds differently. The
    canonical score (float64 sum, rounded once) ties them, and the tie rule (id descending) puts the gold, whose
    id is the largest, first: its rank is 1 in every setting. Ranking raw float32 products (the old in-memory
    engine) scattered it."""
    rng = np.random.default_rng(3)
    dim, n_perm = 384, 40
    docs, queries, qrels, vectors = [], [], [], {}
    for lang in ("en", "de"):
        gold = rng.standard_normal(dim).astype(np.float32)
        vectors[f"gold {lang}"] = gold
        docs.append(SuiteDoc(f"{lang}-9999", f"gold {lang}", "", "", lang))
        for i in range(n_perm):
            vectors[f"perm {i} {lang}"] = rng.permutation(gold)
            docs.append(SuiteDoc(f"{lang}-{i:04d}", f"perm {i} {lang}", "", "", lang))
        vectors[f"q {lang}"] = np.ones(dim, dtype=np.float32)
        queries.append(SuiteQuery(f"{lang}-q", f"q {lang}", lang, "q"))
    qrels = [SuiteQrel(f"{q}-q", f"{d}-9999", 1) for q in ("en", "de") for d in ("en", "de")]
    data = SuiteData.from_records("perm", ["en", "de"], docs, queries, qrels)
    plugin = Table(vectors)
    result, outcome = evaluate(from_object(plugin, "table", "tests:Table"), data, device="cpu", batch_size=8,
                               use_cache=False)  # fmt: skip
    for setting in ("monolingual", "cross-lingual"):
        assert result["settings"][setting]["metrics"]["MRR"] == 1.0, setting
    # multilingual: each gold first in its own tie group, the lower group after the 41 of the higher one
    ranks = outcome.engine.state_of(len(outcome.engine.pools) - 1).ranks()
    assert sorted(ranks[0].tolist()) == [1.0, 2.0 + n_perm] and sorted(ranks[1].tolist()) == [1.0, 2.0 + n_perm]


@pytest.mark.parametrize("bad", ["dup", "space"])
def test_passage_ids_that_a_run_file_cannot_hold_are_refused(bad):
    """Duplicate ids (the last copy used to win silently) and ids with whitespace (8-field TREC lines) are one
    clear error before anything is scored, for encoders and retrievers alike."""
    from xlir_bench.errors import XlirError

    data, vectors = parallel_suite(questions=3, duplicates=0)
    docs = list(data.docs)
    docs[1] = docs[1]._replace(doc_id=docs[0].doc_id if bad == "dup" else "en 0001")
    broken = SuiteData.from_records("toy", list(LANGS), docs, data.queries, data.qrels_iter())
    message = "occurs more than once" if bad == "dup" else "contains whitespace"
    with pytest.raises(XlirError, match=message):
        evaluate(from_object(Table(vectors), "table", "tests:Table"), broken, device="cpu", batch_size=8,
                 use_cache=False)  # fmt: skip
    with pytest.raises(XlirError, match=message):
        evaluate(load_model("bm25", device="cpu"), broken, device="cpu", batch_size=8)


def test_exact_score_tiles_count_wins_on_the_matrix_with_the_tie_rule():
    """A retriever's block (exact scores, most of them tied: BM25 gives a query's unrelated passages 0) is counted
    on the dense matrix: per relevant slot, the passages with a higher score or the same score and a larger id,
    exactly what trec_eval's order gives and what the candidate-by-candidate path counts."""
    from xlir_bench.engine.tiles import HostTile

    rng = np.random.default_rng(5)
    ids = np.array([f"d{i:03d}" for i in rng.permutation(60)])
    scores = rng.integers(0, 3, size=(7, 60)).astype(np.float32)  # three values: ties everywhere
    slots = rng.integers(0, 60, size=(7, 3))
    rel = scores[np.arange(7)[:, None], slots].astype(np.float64)
    rel_ids = ids[slots]
    rel[2, 1], rel_ids[2, 1] = np.nan, ""  # an empty slot
    got = HostTile(scores, ids=ids).exact_counts(rel, rel_ids)
    for r in range(7):
        for j in range(3):
            if np.isnan(rel[r, j]):
                assert got[r, j] == 0
                continue
            order = sorted(range(60), key=lambda c: (-scores[r, c], tuple(-ord(ch) for ch in ids[c])))
            assert got[r, j] == order.index(int(slots[r, j]))  # passages ranked above the relevant one
