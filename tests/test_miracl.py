"""MIRACL: the real dev topics and qrels of all 18 languages, and the streaming evaluation on fixture corpora.

The corpus cannot be downloaded here, so every pipeline test runs on corpora generated from real qrels
(:mod:`miracl_fixture`): every judged passage plus distractors and exact duplicates. Exactness is checked three
ways on the same run: the streamed measures, an in-memory reference (one full score matrix, ranks by
``metrics.relevant_ranks``) and ir-measures on a full-depth TREC run, for shard sizes that do and do not divide the
corpus, with the heavily tied integer scores of the ``hash-int`` test plugin.
"""

from __future__ import annotations

import json
import re

import ir_measures
import numpy as np
import pytest
from conftest import DATA, run_cli
from ir_measures import AP, RR, R, nDCG
from miracl_fixture import write_corpus

from xlir_bench import metrics, plugins, results, suites
from xlir_bench.errors import XlirError
from xlir_bench.runner import evaluate
from xlir_bench.shards import ShardStore
from xlir_bench.suites import miracl
from xlir_bench.suites.miracl import load as load_miracl


def published_query_counts() -> dict[str, int]:
    """The dev query counts as the shared data's README states them (an independent source)."""
    if not (DATA / "README.md").is_file():
        pytest.skip("needs shared/data's README (the independent list of counts); the cache copy has none")
    text = (DATA / "README.md").read_text()
    line = re.search(r"MIRACL dev queries:(.*?)\.", " ".join(text.split()))
    assert line, "the shared data README lists MIRACL's dev query counts"
    return {lang: int(n) for lang, n in re.findall(r"([a-z]{2}) (\d+)", line.group(1))}


def test_topics_and_qrels_of_all_18_languages_match_the_published_counts():
    counts = published_query_counts()
    assert sorted(counts) == sorted(miracl.LANGUAGES)
    for lang in miracl.LANGUAGES:
        topics = miracl.load_topics(lang, DATA)
        assert len(topics.queries) == counts[lang], lang
        assert len({q.query_id for q in topics.queries}) == counts[lang]
        judged = [g for j in topics.qrels.values() for g in j.values()]
        assert set(judged) <= {0, 1} and 1 in judged
        assert set(topics.qrels) <= {q.query_id for q in topics.queries}
        # the checksum recorded is ir_datasets' own pinned md5 (files are byte-identical)
        assert topics.checksums[f"miracl/{lang}/dev/qrels.tsv"] == miracl.official_md5(lang, "dev/qrels")


def test_suite_names_resolve_to_canonical_language_order():
    assert suites.resolve(["miracl:yo,sw"]) == ["miracl:sw,yo"]
    assert suites.resolve(["miracl"]) == ["miracl"]
    assert suites.resolve(["all"]) == ["xquad-r", "mlqa-r"]  # MIRACL only when asked for by name
    with pytest.raises(XlirError, match="unknown MIRACL language"):
        suites.resolve(["miracl:sw,xx"])


def test_a_modified_qrels_file_is_refused(tmp_path):
    folder = tmp_path / "miracl" / "yo" / "dev"
    folder.mkdir(parents=True)
    (folder / "topics.tsv").write_bytes((DATA / "miracl/yo/dev/topics.tsv").read_bytes())
    (folder / "qrels.tsv").write_bytes((DATA / "miracl/yo/dev/qrels.tsv").read_bytes()[:-40])
    with pytest.raises(XlirError, match="checksum mismatch.*qrels.tsv"):
        miracl.load_topics("yo", tmp_path)


# -- streaming exactness --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("miracl-fixture")
    write_corpus(DATA, out, "yo", distractors=300, duplicates=40, files=2, seed=1)
    write_corpus(DATA, out, "sw", distractors=300, duplicates=40, files=3, seed=2, max_queries=150)
    return out


def _run(model, data, tmp_path, shard_size, settings=("monolingual", "multilingual"), depth=None):
    return evaluate(model, data, device="cpu", batch_size=16, settings=settings, run_depth=depth, shard_size=shard_size)


def _reference(model, data) -> dict[str, dict[str, np.ndarray]]:
    """Per-query measures from one in-memory score matrix per pool (ranks by metrics.relevant_ranks)."""
    docs = {lang: list(data.corpora[lang]) for lang in data.languages}

    def vectors(lang, items, method):
        return np.asarray(model.call(method, items, language=lang, batch_size=16), dtype=np.float32)

    d_vec = {
        lang: vectors(lang, [{"text": f"{t} {x}" if t else x, "title": t} for _, t, x in docs[lang]], "encode_corpus")
        for lang in data.languages
    }
    out = {}
    for setting in ("monolingual", "multilingual"):
        per_lang = {}
        for lang in data.languages:
            topics = data.topics[lang]
            qs = [q for q in topics.queries if topics.relevant(q.query_id)]
            q_vec = vectors(lang, [q.text for q in qs], "encode_queries")
            pool_langs = [lang] if setting == "monolingual" else data.languages
            ids = [f"{pl}:{d}" for pl in pool_langs for d, _, _ in docs[pl]]
            matrix = np.concatenate([d_vec[pl] for pl in pool_langs])
            position = {d: i for i, d in enumerate(ids)}
            rel = [[position.get(f"{lang}:{d}", -1) for d in topics.relevant(q.query_id)] for q in qs]
            width = max(len(r) for r in rel)
            rel_arr = np.array([r + [-1] * (width - len(r)) for r in rel])
            gains = np.array([[1.0] * len(r) + [0.0] * (width - len(r)) for r in rel])
            ranks = metrics.relevant_ranks(q_vec @ matrix.T, rel_arr, metrics.descending_id_order(ids))
            per_lang[lang] = metrics.compute_all(ranks, gains)
        out[setting] = per_lang
    return out


@pytest.mark.parametrize("shard_size", [97, None])
def test_streamed_measures_equal_in_memory_and_ir_measures(fixture_data, with_fake_plugins, shard_size, tmp_path):
    data = load_miracl(("sw", "yo"), fixture_data)
    model = plugins.load_model("hash-int", device="cpu")
    total = sum(1 for lang in data.languages for _ in data.corpora[lang])
    yo = sum(1 for _ in data.corpora["yo"])
    size = shard_size or next(s for s in range(50, yo) if yo % s == 0)  # a size that divides yo's corpus
    result, evaluator = _run(model, data, tmp_path, size, depth=total)
    assert result["suite"]["documents"] == total
    reference = _reference(model, data)
    per_query = dict(zip(result["per_query"]["query_ids"], zip(*result["per_query"]["AP"].values())))
    for s_index, setting in enumerate(("monolingual", "multilingual")):
        for lang in data.languages:
            ref = reference[setting][lang]
            got = result["settings"][setting]["per_language"][lang]
            for name, values in ref.items():
                assert got[name] == pytest.approx(float(np.mean(values)), abs=1e-12), (setting, lang, name)
            rows = [k for k in per_query if k.startswith(f"{lang}:")]
            assert np.allclose([per_query[k][s_index] for k in rows], ref["mAP"], atol=1e-6)
    # ir-measures on the full-depth runs (every passage ranked), with the full qrels
    folder = tmp_path / "runs"
    runs = evaluator.runs()
    for name, rows in runs.items():
        for lang in [None] if name == "multilingual" else data.languages:  # monolingual: each language's queries
            mine = lambda q, lang=lang: lang is None or q.startswith(f"{lang}:")  # noqa: E731
            qrels = [ir_measures.Qrel(q, d, g) for q, d, g in evaluator.qrels(name) if mine(q)]
            run = [ir_measures.ScoredDoc(q, d, s) for q, docs, scores in rows for d, s in zip(docs, scores) if mine(q)]
            expected = ir_measures.calc_aggregate([AP, RR, nDCG @ 10, R @ 100, R @ 1], qrels, run)
            if name == "multilingual":
                got = result["settings"]["multilingual"]["metrics"]
            else:
                got = result["settings"]["monolingual"]["per_language"][lang]
            for measure, value in expected.items():
                key = {"AP": "mAP", "RR": "MRR"}.get(str(measure), str(measure))
                assert got[key] == pytest.approx(value, abs=1e-9), (name, lang, key)
    assert not folder.exists()


def _exact_top(model, data, setting: str, depth: int) -> dict[str, list[str]]:
    """Each query's top ``depth`` ids from one in-memory score matrix, trec_eval order (score, then id descending)."""
    docs = {lang: list(data.corpora[lang]) for lang in data.languages}
    vec = {
        lang: np.asarray(model.call("encode_corpus", [{"text": f"{t} {x}" if t else x, "title": t}
                                                       for _, t, x in docs[lang]], language=lang, batch_size=16))
        for lang in data.languages
    }  # fmt: skip
    out = {}
    for lang in data.languages:
        topics = data.topics[lang]
        qs = [q for q in topics.queries if topics.relevant(q.query_id)]
        q_vec = np.asarray(model.call("encode_queries", [q.text for q in qs], language=lang, batch_size=16))
        pools = [lang] if setting == "monolingual" else data.languages
        ids = np.array([f"{pl}:{d}" for pl in pools for d, _, _ in docs[pl]])
        scores = q_vec.astype(np.float64) @ np.concatenate([vec[pl] for pl in pools]).astype(np.float64).T
        for q, row in zip(qs, scores.astype(np.float32)):
            order = np.lexsort((ids, row))[::-1][:depth]  # ascending (score, id) reversed
            out[f"{lang}:{q.query_id}"] = [str(x) for x in ids[order]]
    return out


@pytest.mark.parametrize("path", ["numpy-threads", "numpy-serial", "torch", "torch-sorted"])
def test_small_top_k_from_pruned_pools_is_exact(fixture_data, with_fake_plugins, tmp_path, monkeypatch, path):
    """Top-k pools pruned by error bounds (tiny tiles and compaction sizes, so that every pruning path runs) give the
    exact top-k of the full score matrix, heavy ties included. ``numpy-threads``: tiles scored by 3 worker threads
    with thresholds taken several tiles before they are folded in; ``numpy-serial``: one thread; ``torch``: the
    device-tile code on CPU torch, a comparison pass per relevant slot; ``torch-sorted``: the same with the
    searchsorted counting that rows with many relevant passages take."""
    from xlir_bench.engine import core, tiles
    from xlir_bench.metrics import stream

    monkeypatch.setattr(tiles, "TILE_ROWS", 16)
    monkeypatch.setattr(tiles, "TILE_COLS", 40)
    monkeypatch.setattr(stream, "COMPACT_MIN", 8)
    monkeypatch.setattr(stream, "TIED_POOL_FACTOR", 1)  # crowded pools decided exactly during the stream, often
    monkeypatch.setattr(stream, "TIED_POOL_MIN", 3)
    original = tiles.TileScorer
    if path.startswith("torch"):
        pytest.importorskip("torch")
        monkeypatch.setattr(core, "TileScorer", lambda q, device: original(q, device, on_torch=True))
        monkeypatch.setattr(tiles, "SLOT_PASSES_MAX", 0 if path == "torch-sorted" else 1000)
        monkeypatch.setattr(tiles, "TILE_ROWS", 64)  # torch's per-call overhead: 4x fewer tiles, same pruning
    else:
        workers = 3 if path == "numpy-threads" else 1
        monkeypatch.setattr(core, "TileScorer", lambda q, device: original(q, device, workers=workers))
    data = load_miracl(("sw", "yo"), fixture_data)
    model = plugins.load_model("hash-int", device="cpu")
    depth = 7
    result, evaluator = _run(model, data, tmp_path, 97, depth=depth)
    runs = evaluator.runs()
    for setting in ("monolingual", "multilingual"):
        expected = _exact_top(model, data, setting, depth)
        got = {q: docs for q, docs, _ in runs[setting]}
        assert got.keys() == expected.keys()
        assert got == expected, setting
    reference = _reference(model, data)  # the counts behind every rank-based measure, from the same pass
    for setting in ("monolingual", "multilingual"):
        for lang in data.languages:
            got = result["settings"][setting]["per_language"][lang]
            for name, values in reference[setting][lang].items():
                assert got[name] == pytest.approx(float(np.mean(values)), abs=1e-12), (setting, lang, name)


def test_absent_relevant_passages_count_as_never_retrieved(tmp_path, with_fake_plugins):
    write_corpus(DATA, tmp_path, "yo", distractors=50, drop=25, seed=3)
    data = load_miracl(("yo",), tmp_path)
    model = plugins.load_model("hash-int", device="cpu")
    result, evaluator = _run(model, data, tmp_path, 200, settings=("monolingual",), depth=10_000)
    absent = result["suite"]["notes"]["relevant_not_in_corpus"]
    assert absent > 0
    assert any(w.startswith(f"{absent:,} of ") and "not in the corpus" in w for w in result["warnings"])
    ((name, rows),) = evaluator.runs().items()
    run = [ir_measures.ScoredDoc(q, d, s) for q, docs, scores in rows for d, s in zip(docs, scores)]
    qrels = [ir_measures.Qrel(q, d, g) for q, d, g in evaluator.qrels(name)]
    expected = ir_measures.calc_aggregate([AP, R @ 100], qrels, run)
    got = result["settings"]["monolingual"]["metrics"]
    assert got["mAP"] == pytest.approx(expected[AP], abs=1e-9)
    assert got["R@100"] == pytest.approx(expected[R @ 100], abs=1e-9)


def test_bm25_on_miracl_agrees_with_ir_measures(fixture_data, tmp_path):
    data = load_miracl(("yo",), fixture_data)
    model = plugins.load_model("bm25", device="cpu")
    result, evaluator = _run(model, data, tmp_path, None, depth=10_000)
    for name, rows in evaluator.runs().items():
        run = [ir_measures.ScoredDoc(q, d, s) for q, docs, scores in rows for d, s in zip(docs, scores)]
        qrels = [ir_measures.Qrel(q, d, g) for q, d, g in evaluator.qrels(name)]
        expected = ir_measures.calc_aggregate([AP, nDCG @ 10], qrels, run)
        block = result["settings"]["multilingual" if name == "multilingual" else "monolingual"]["metrics"]
        assert block["mAP"] == pytest.approx(expected[AP], abs=1e-9)
        assert block["nDCG@10"] == pytest.approx(expected[nDCG @ 10], abs=1e-9)
    assert result["settings"]["monolingual"]["metrics"]["nDCG@10"] > 0.3  # relevant passages repeat their query


def test_bm25_index_limit_is_one_clear_line(fixture_data, tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_BENCH_MAX_INDEX_PASSAGES", "100")
    data = load_miracl(("yo",), fixture_data)
    with pytest.raises(XlirError, match="more than 100 passages.*XLIR_BENCH_MAX_INDEX_PASSAGES"):
        _run(plugins.load_model("bm25", device="cpu"), data, tmp_path, None)


# -- shards: resume, corruption, identity ---------------------------------------------------------------------
def _store(data, model, size=97):
    from xlir_bench.engine.core import Engine
    from xlir_bench.engine.data import from_miracl
    from xlir_bench.runner import model_identity
    from xlir_bench.suites.download import cache_dir

    identity = model_identity(model, 16)
    ev = Engine(model, from_miracl(data), settings=("monolingual",), batch_size=16, identity=identity,
                cache_root=cache_dir(), shard_size=size)  # fmt: skip
    return ev.corpus_store("yo", cache_dir(), identity)


def test_killed_or_corrupt_shards_are_re_encoded_and_nothing_else(fixture_data, with_fake_plugins, tmp_path):
    data = load_miracl(("yo",), fixture_data)
    log = tmp_path / "calls.log"
    model = plugins.load_model("hash-int", device="cpu", options={"log": str(log)})
    first, _ = _run(model, data, tmp_path, 97, settings=("monolingual",))
    store: ShardStore = _store(data, model)
    n = store.complete_count()
    assert n and n > 3
    log.write_text("")
    again, _ = _run(model, data, tmp_path, 97, settings=("monolingual",))
    assert log.read_text() == ""  # a complete corpus: no passage text read, nothing encoded
    # a killed run leaves a shard without its manifest: only that shard is encoded again
    store._paths(2)[2].unlink()
    _run(model, data, tmp_path, 97, settings=("monolingual",))
    assert [line.split()[1] for line in log.read_text().splitlines()] == ["97"]
    # a corrupt shard (bytes flipped, same size) is caught by its checksum, removed and encoded again in the same
    # run, with a warning; only that shard is encoded
    vecs = store._paths(1)[0]
    raw = bytearray(vecs.read_bytes())
    raw[-5] ^= 0xFF
    vecs.write_bytes(bytes(raw))
    log.write_text("")
    third, _ = _run(model, data, tmp_path, 97, settings=("monolingual",))
    assert any("shard 1 of yo" in w and "fails its checksum" in w and "encoded it again" in w
               for w in third["warnings"]), third["warnings"]  # fmt: skip
    assert [line.split()[1] for line in log.read_text().splitlines()] == ["97"]
    assert third["settings"] == first["settings"] == again["settings"]
    # a truncated shard (taken for an unfinished one: encoded again, as after a kill) and a manifest whose norm bound
    # is below its vectors' (a scaled shard with a rewritten manifest: removed with a warning, encoded again)
    store._paths(0)[0].write_bytes(store._paths(0)[0].read_bytes()[:100])
    manifest = json.loads(store._paths(3)[2].read_text())
    manifest["max_norm"] /= 2
    store._paths(3)[2].write_text(json.dumps(manifest))
    log.write_text("")
    fourth, _ = _run(model, data, tmp_path, 97, settings=("monolingual",))
    assert sum("norm bound below" in w for w in fourth["warnings"]) == 1, fourth["warnings"]
    assert [line.split()[1] for line in log.read_text().splitlines()] == ["97", "97"]
    assert fourth["settings"] == first["settings"]


def test_shard_checksums_are_chunked_crc32_and_earlier_sha256_shards_still_verify(tmp_path, monkeypatch):
    """Chunks are checked in parallel and each one counts: a flip in the last chunk fails. A shard written by an
    earlier version (sha256 in its manifest) is read as before, and its corruption is still caught."""
    import hashlib
    import zlib

    from xlir_bench import fileio

    monkeypatch.setattr(fileio, "CRC_CHUNK", 1000)
    data = bytes(np.random.default_rng(0).integers(0, 256, 4321, dtype=np.uint8))
    chunks = fileio.crc32_chunks(data, threads=4)
    by_hand = [zlib.crc32(data[i : i + 1000]) for i in range(0, 4321, 1000)]
    assert chunks == fileio.crc32_chunks(data, threads=1) == by_hand
    flipped = bytearray(data)
    flipped[-1] ^= 1
    assert fileio.crc32_chunks(flipped)[:-1] == chunks[:-1] and fileio.crc32_chunks(flipped)[-1] != chunks[-1]

    store = ShardStore(tmp_path, {"model": "m"}, {"corpus": "c"})
    vectors = np.random.default_rng(1).standard_normal((50, 8)).astype(np.float32)
    store.write(0, [f"d{i}" for i in range(50)], vectors)
    vecs_path, ids_path, manifest_path = store._paths(0)
    manifest = json.loads(manifest_path.read_text())
    assert len(manifest["vecs_crc32"]) == -(-manifest["vecs_bytes"] // 1000) > 1
    for part, path in (("vecs", vecs_path), ("ids", ids_path)):  # rewrite it as an earlier version did
        del manifest[f"{part}_crc32"]
        manifest[f"{part}_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    np.testing.assert_array_equal(store.read(0).vectors, vectors)
    assert list(store.read_ids(0)) == [f"d{i}" for i in range(50)]
    raw = bytearray(vecs_path.read_bytes())
    raw[-3] ^= 0x10
    vecs_path.write_bytes(bytes(raw))
    with pytest.raises(XlirError, match="fails its checksum"):
        store.read(0)
    assert not manifest_path.exists()  # removed, so the next run re-encodes it


def test_a_shard_of_another_dimension_is_replaced_not_used(fixture_data, with_fake_plugins, tmp_path):
    """A consistent shard whose manifest says another dimension is caught where relevant passages are looked up
    (before any scoring), removed and encoded again in the same run, with a warning naming the dimension."""
    data = load_miracl(("yo",), fixture_data)
    model = plugins.load_model("hash-int", device="cpu")
    first, _ = _run(model, data, tmp_path, 500, settings=("monolingual",))
    store = _store(data, model, 500)
    manifest = json.loads(store._paths(0)[2].read_text())
    manifest["dim"] = 7
    store._paths(0)[2].write_text(json.dumps(manifest))
    again, _ = _run(model, data, tmp_path, 500, settings=("monolingual",))
    assert any("dimension 7" in w and "encoded it again" in w for w in again["warnings"]), again["warnings"]
    assert again["settings"] == first["settings"]
    assert json.loads(store._paths(0)[2].read_text())["dim"] != 7


# -- command line -----------------------------------------------------------------------------------------------
def test_cli_miracl_run_and_bad_input(fixture_data, tmp_path):
    env = {"XLIR_BENCH_DATA": str(fixture_data)}
    done = run_cli("run", "--model", "hashgram", "--suite", "miracl:yo", "--results-dir", str(tmp_path), "--quiet",
                   "--shard-size", "300", env_extra=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = results.read_result(tmp_path / "miracl_yo" / "hashgram.json")
    assert set(result["settings"]) == {"monolingual", "multilingual"}
    assert result["suite"]["corpus"]["yo"]["official"] is False  # a fixture, recorded as such
    bad = run_cli("run", "--model", "hashgram", "--suite", "miracl:yo", "--setting", "cross-lingual",
                  "--results-dir", str(tmp_path), env_extra=env)  # fmt: skip
    assert bad.returncode == 2 and "miracl:yo has the settings monolingual and multilingual" in bad.stderr
    missing = run_cli("run", "--model", "hashgram", "--suite", "miracl:sw", "--results-dir", str(tmp_path),
                      env_extra={"XLIR_BENCH_DATA": str(DATA)})  # fmt: skip
    assert missing.returncode == 2 and "no MIRACL sw corpus" in missing.stderr, missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("suite", ["miracl:sw,yo", "mlqa-r"])
def test_two_gloo_ranks_give_the_one_process_result(fixture_data, tmp_path, fake_plugin_path, suite):
    """Every suite goes through the engine under torchrun (XQuAD-R and MLQA-R used to be evaluated in full on every
    rank, each rank writing the result): the ranks share the shards, rank 0 alone writes, the numbers are the same."""
    import os
    import subprocess
    import sys

    data = str(fixture_data) if suite.startswith("miracl") else str(DATA)
    env = {**os.environ, "XLIR_BENCH_DATA": data, "PYTHONPATH": str(fake_plugin_path)}
    common = ["--model", "hash-int", "--suite", suite, "--shard-size", "150", "--quiet"]
    if not suite.startswith("miracl"):
        common += ["--setting", "multilingual", "--shard-size", "2000"]
    outs = {}
    for procs in (1, 2):
        log = tmp_path / f"log{procs}"
        res = tmp_path / f"res{procs}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-port",
               str(29500 + procs), "-m", "xlir_bench.cli", "run", *common, "--results-dir", str(res),
               "--model-arg", f"log={log}"]  # fmt: skip
        env["XLIR_BENCH_CACHE"] = str(tmp_path / f"cache{procs}")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        (written,) = [p for p in res.rglob("*.json")]  # one result, written by rank 0
        outs[procs] = results.read_result(written)
        lines = [line.split() for line in log.read_text().splitlines()]
        outs[f"ranks{procs}"] = {r for r, _ in lines}
        outs[f"passages{procs}"] = {r: sum(int(n) for rr, n in lines if rr == r) for r, _ in lines}
    for key in ("settings", "per_query"):
        assert json.dumps(outs[1][key], sort_keys=True) == json.dumps(outs[2][key], sort_keys=True)
    assert outs["ranks2"] == {"0", "1"}
    total = outs[1]["suite"]["documents"]
    assert sum(outs["passages2"].values()) == total == outs["passages1"]["0"]
    assert 0 < outs["passages2"]["1"] < total  # each rank encoded its share only


@pytest.mark.slow
def test_ranks_that_see_different_corpora_stop_in_one_line(fixture_data, tmp_path, fake_plugin_path):
    """A rank that reads another corpus (same topics and qrels) was mixed in with exit 0; the corpus content is now
    part of what the ranks must agree on."""
    import os
    import subprocess
    import sys

    other = tmp_path / "other"
    write_corpus(DATA, other, "yo", distractors=120, seed=9)
    launcher = tmp_path / "launch.py"
    launcher.write_text(
        "import os, runpy, sys\n"
        f"os.environ['XLIR_BENCH_DATA'] = {str(fixture_data)!r} if os.environ['RANK'] == '0' else {str(other)!r}\n"
        "sys.argv = ['xlir-bench', *sys.argv[1:]]\n"
        "runpy.run_module('xlir_bench.cli', run_name='__main__')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(fake_plugin_path), "XLIR_BENCH_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29577",
           str(launcher), "run", "--model", "hash-int", "--suite", "miracl:yo", "--quiet",
           "--results-dir", str(tmp_path / "res")]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "torchrun ranks disagree about the run" in done.stderr and "corpus content" in done.stderr
    assert not list((tmp_path / "res").rglob("*.json"))


def test_kth_largest_per_row_matches_sorting_on_both_paths():
    """The pool's k-th lower bound per row (dense partition, or lexsort for a very uneven pool) equals sorting each
    row, with heavy ties; rows with fewer than k entries are left out."""
    from xlir_bench.metrics.stream import _kth_largest_per_row

    rng = np.random.default_rng(1)
    for trial in range(120):
        n_rows, k, n = int(rng.integers(1, 30)), int(rng.integers(1, 8)), int(rng.integers(0, 300))
        g, v = rng.integers(0, n_rows, n), rng.integers(-5, 5, n).astype(float)
        if trial % 3 == 0:  # one row far longer than the others: the lexsort path
            g, v = np.concatenate([g, np.zeros(5000, int)]), np.concatenate([v, rng.standard_normal(5000)])
        rows, kth = _kth_largest_per_row(g, v, k, n_rows)
        expected_rows = [r for r in range(n_rows) if (g == r).sum() >= k]
        assert rows.tolist() == expected_rows, trial
        assert kth.tolist() == [float(np.sort(v[g == r])[::-1][k - 1]) for r in expected_rows], trial


def test_relevant_passages_are_found_by_binary_search_with_duplicates_and_misses():
    """The lookup of judged passages in a shard's ids: every position of a wanted id (a malformed corpus may repeat
    one), none for ids past the end of the sorted wanted list or absent from it, nothing when nothing is wanted."""
    from xlir_bench.engine.vectors import _members

    ids = np.array(["9#1", "1#0", "zz#3", "5#2", "1#0", "0#0"])
    wanted = np.array(sorted(["1#0", "5#2", "7#7", "zz#3"]))
    assert _members(ids, wanted).tolist() == [1, 2, 3, 4]
    assert _members(ids, np.array([], dtype=str)).tolist() == []
    assert _members(np.array([], dtype=str), wanted).tolist() == []
    assert _members(np.array(["zzz#9"]), wanted).tolist() == []  # sorts after every wanted id


def test_progress_knows_the_passages_of_local_corpus_files_before_reading_them(fixture_data, monkeypatch):
    """A local corpus gets a progress total (its lines, counted in seconds) instead of ``N/?``; beyond the counting
    limit, and only there, the total stays unknown."""
    from xlir_bench.engine.data import MiraclCorpus
    from xlir_bench.suites import miracl as miracl_suite

    corpus = miracl_suite.corpus("yo", fixture_data)
    passages = sum(1 for _ in corpus)
    assert len(corpus.files) == 2 and MiraclCorpus(corpus).size_hint() == passages
    monkeypatch.setattr(miracl_suite, "COUNT_LIMIT", 10)
    assert MiraclCorpus(corpus).size_hint() is None


def test_an_id_repeated_in_another_shard_is_refused(tmp_path, with_fake_plugins):
    """Shards are checked one at a time; a passage id that comes back in a later shard (with another text) is still
    refused, naming the id, before anything is scored."""
    import gzip

    write_corpus(DATA, tmp_path, "yo", distractors=50, seed=4, files=2)
    files = sorted((tmp_path / "miracl" / "yo" / "corpus").glob("docs-*.jsonl.gz"))
    with gzip.open(files[0], "rt", encoding="utf-8") as handle:
        first = json.loads(handle.readline())
    with gzip.open(files[-1], "at", encoding="utf-8") as handle:
        handle.write(json.dumps({**first, "text": "another text under the same id"}) + "\n")
    data = load_miracl(("yo",), tmp_path)
    model = plugins.load_model("hash-int", device="cpu")
    with pytest.raises(XlirError, match=f"passage id '{first['docid']}' occurs more than once in the yo corpus"):
        _run(model, data, tmp_path, 40, settings=("monolingual",))
