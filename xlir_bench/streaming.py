"""Exact evaluation over corpora that do not fit in memory (MIRACL), in one streaming pass.

1. Queries are encoded (rank 0; they are small) and broadcast.
2. Each language's corpus is encoded into verified shards on disk (:mod:`xlir_bench.shards`); under torchrun each
   rank encodes only the shards it owns (round-robin). A killed run resumes at the first unfinished shard.
3. The judged-relevant passages' vectors are looked up in the shards and shared by all ranks, and their canonical
   scores computed (:mod:`xlir_bench.metrics.stream` says why "canonical").
4. Every rank streams its shards: a blocked score matrix against the queries, a threshold pass that keeps only
   candidates able to beat a relevant passage or enter the top-k, exact counts and a running top-k.
5. Counts are summed and top-k lists merged on rank 0, which computes every measure from the exact ranks and writes
   the one result.

Settings: ``monolingual`` (each language's queries against its own corpus; MIRACL's official setting) and
``multilingual`` (every query against the union of the chosen corpora, doc ids namespaced ``<lang>:<docid>``
because MIRACL ids repeat across languages). Retrievers (BM25) are scored from an in-memory index per pool, with
the same exact counting.
"""

from __future__ import annotations

import functools
import os
import queue
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from . import metrics
from .cache import EmbeddingCache
from .distributed import World
from .errors import XlirError
from .fileio import usable_cores
from .metrics.stream import StreamState, _down32, _up32, canonical_scores, error_bound
from .plugins import LoadedModel, check_matrix
from .scoring import ENCODE_CHUNK, encode_items, normalise, zero_vector_warning
from .shards import ShardStore
from .suites import miracl
from .suites.download import cache_dir

SETTINGS = ("monolingual", "multilingual")
DEFAULT_SHARD_SIZE = 100_000
BLOCK_ELEMENTS = 1 << 23  # scores held at once per block (retrievers: queries x pool)
TILE_ROWS, TILE_COLS = 1024, 8192  # dense score tiles (queries x passages) on CPU
SLOT_PASSES_MAX = 8  # device tiles: up to this many relevant slots per row, one comparison pass per slot
CUDA_TILE_ROWS, CUDA_TILE_COLS = 4096, 32768  # on a GPU: 512 MiB of scores (and 1 GiB of bucket indices) per tile
BIAS_CUTOFFS = (10, 100)
INDEX_LIMIT_ENV = "XLIR_BENCH_MAX_INDEX_PASSAGES"
DEFAULT_INDEX_LIMIT = 2_000_000

Advance = Callable[[str, int], None]


@dataclass
class MiraclData:
    """The chosen languages' queries and qrels in memory, and their corpora as streams."""

    name: str
    languages: list[str]
    topics: dict[str, miracl.Topics]
    corpora: dict[str, miracl.Corpus]
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def checksums(self) -> dict[str, str]:
        return {k: v for t in self.topics.values() for k, v in t.checksums.items()}


def load(languages: tuple[str, ...], data_dir=None) -> MiraclData:
    topics = {lang: miracl.load_topics(lang, data_dir) for lang in languages}
    corpora = {lang: miracl.corpus(lang, data_dir) for lang in languages}
    return MiraclData(miracl.suite_name(languages), list(languages), topics, corpora)


# -- queries and their relevant passages ------------------------------------------------------------------------
@dataclass
class QuerySet:
    """Every query of the run, namespaced ``<lang>:<qid>``, with its relevant passages (namespaced too)."""

    ids: list[str]
    raw_ids: list[str]
    texts: list[str]
    lang: np.ndarray
    rel_ids: np.ndarray  # (Q, R) '' = padding
    rel_gains: np.ndarray  # (Q, R) 0 = padding
    _rows: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # rows_of, computed once per language

    @classmethod
    def build(cls, data: MiraclData) -> QuerySet:
        ids, raw, texts, langs, rels = [], [], [], [], []
        skipped = 0
        for lang in data.languages:
            t = data.topics[lang]
            for q in t.queries:
                relevant = t.relevant(q.query_id)
                if not relevant:  # trec_eval skips queries without a relevant passage
                    skipped += 1
                    continue
                ids.append(f"{lang}:{q.query_id}")
                raw.append(q.query_id)
                texts.append(q.text)
                langs.append(lang)
                rels.append([f"{lang}:{d}" for d in relevant])
        data.notes["queries_without_relevant"] = skipped
        width = max((len(r) for r in rels), default=1)
        rel_ids = np.full((len(rels), width), "", dtype=f"<U{max((len(x) for r in rels for x in r), default=1)}")
        gains = np.zeros((len(rels), width))
        for row, r in enumerate(rels):
            rel_ids[row, : len(r)] = r
            gains[row, : len(r)] = 1.0
        return cls(ids, raw, texts, np.array(langs), rel_ids, gains)

    def rows_of(self, lang: str) -> np.ndarray:
        rows = self._rows.get(lang)
        if rows is None:
            rows = self._rows[lang] = np.flatnonzero(self.lang == lang)
        return rows


# -- the run ----------------------------------------------------------------------------------------------------
class StreamEvaluator:
    """One (model, MIRACL selection) evaluation on this rank; rank 0 ends with the measures."""

    def __init__(
        self,
        model: LoadedModel,
        data: MiraclData,
        *,
        settings: tuple[str, ...],
        batch_size: int,
        identity: dict | None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        shard_dtype: str = "float32",
        run_depth: int | None = None,
        world: World | None = None,
        device: str = "cpu",
        advance: Advance = lambda label, n: None,
        cache_root: Path | None = None,
    ) -> None:
        unknown = [s for s in settings if s not in SETTINGS]
        if unknown or not settings:
            raise XlirError(
                f"MIRACL has the settings {' and '.join(SETTINGS)} (its qrels are monolingual); asked for none of them"
            )
        self.model, self.data, self.settings = model, data, settings
        self.batch_size, self.shard_size, self.shard_dtype = batch_size, shard_size, shard_dtype
        self.run_depth, self.world, self.device, self.advance = run_depth, world or World(), device, advance
        self.cache_root = cache_root or cache_dir()
        self.identity = identity or {"model": model.label, "unversioned": True}
        self.queries = QuerySet.build(data)
        self.encode_seconds = self.score_seconds = 0.0
        self.read_wait_seconds = 0.0  # of score_seconds, the time scoring waited on shard reads (I/O-bound if large)
        self.passages: dict[str, int] = {}
        self.q: np.ndarray | None = None
        k_multi = max(BIAS_CUTOFFS[-1], run_depth or 0)
        self.k = {"monolingual": run_depth or 0, "multilingual": k_multi}
        self.states: dict[str, StreamState] = {}
        self.warnings: list[str] = []
        self.per_query: dict[str, np.ndarray] = {}

    # -- 1. queries -----------------------------------------------------------------------------------------
    def encode_queries(self, use_cache: bool) -> None:
        start = time.perf_counter()
        cache = EmbeddingCache(self.identity) if use_cache and not self.identity.get("unversioned") else None
        error, q = None, None
        if self.world.is_main:
            try:
                parts, dim = [], None
                for lang in self.data.languages:
                    rows = self.queries.rows_of(lang)
                    for lo in range(0, len(rows), ENCODE_CHUNK):
                        texts = [self.queries.texts[i] for i in rows[lo : lo + ENCODE_CHUNK]]
                        vectors, dim, _ = encode_items(
                            self.model, cache, self.batch_size, "queries", "encode_queries", lang, texts, dim,
                            lambda n, label=f"encode queries {lang}": self.advance(label, n),
                        )  # fmt: skip
                        parts.append(vectors)
                raw = np.concatenate(parts) if parts else np.zeros((0, 1))
                self.warnings += [w for w in [zero_vector_warning(raw, "queries", self.model)] if w]
                q = normalise(raw, self.model)
            except XlirError as exc:
                error = str(exc)
        if cache is not None:
            self.warnings += cache.warnings
        self.world.agree(error, "encoding the queries")
        self.q = self.world.broadcast(q)
        self.encode_seconds += time.perf_counter() - start

    # -- 2. corpus shards -----------------------------------------------------------------------------------
    def store(self, lang: str) -> ShardStore:
        corpus = self.data.corpora[lang]
        key = {"suite": "miracl-v1.0", "language": lang, "shard_size": self.shard_size, **corpus.fingerprint()}
        return ShardStore(self.cache_root, self.identity, key, self.shard_dtype)

    def encode_corpus(self, lang: str) -> int:
        """Encode this rank's missing shards of ``lang``; return the number of shards of the corpus."""
        start = time.perf_counter()
        store = self.store(lang)
        done = store.complete_count()
        if done is not None:
            self.passages[lang] = _passages(store, done)
            return done
        error, shard, ids, docs, total = None, 0, [], [], 0
        clock, encoded = time.perf_counter(), 0
        mine = self.world.owns(0) and not store.has(0)
        try:
            for doc_id, title, text in self.data.corpora[lang]:
                if mine:
                    ids.append(doc_id)
                    docs.append(_doc(doc_id, title, text, lang))
                total += 1
                if total % self.shard_size == 0:
                    if mine:
                        encoded += self._write_shard(store, shard, ids, docs, lang, clock, encoded)
                    else:
                        self.advance(f"skip {lang} shard {shard}", 0)
                    shard, ids, docs = shard + 1, [], []
                    mine = self.world.owns(shard) and not store.has(shard)
            if total % self.shard_size and self.world.owns(shard) and not store.has(shard, total % self.shard_size):
                self._write_shard(store, shard, ids, docs, lang, clock, encoded)
        except XlirError as exc:
            error = str(exc)
        self.world.agree(error, f"encoding the {lang} corpus")
        n = -(-total // self.shard_size)
        if total == 0:
            raise XlirError(f"the MIRACL {lang} corpus is empty")
        if all(store.has(i) for i in range(n)):  # with a shared file system every rank sees every shard
            store.mark_complete(n, total)
        self.passages[lang] = total
        self.encode_seconds += time.perf_counter() - start
        return n

    def _write_shard(self, store, shard, ids, docs, lang, clock, encoded_before) -> int:
        parts, dim = [], self.q.shape[1] if self.q is not None else None
        for lo in range(0, len(docs), ENCODE_CHUNK):
            chunk = docs[lo : lo + ENCODE_CHUNK]
            label = f"encode {lang} shard {shard}"
            vectors, dim, _ = encode_items(
                self.model, None, self.batch_size, "corpus", "encode_corpus", lang, chunk, dim,
                lambda n, label=label: self.advance(label, n),
            )  # fmt: skip
            parts.append(vectors)
            done = encoded_before + lo + len(chunk)
            rate = done / max(time.perf_counter() - clock, 1e-9)
            self.advance(f"{label} ({rate:,.0f} passages/s)", 0)
        raw = np.concatenate(parts)
        note = zero_vector_warning(raw, f"{lang} passages in shard {shard}", self.model)
        if note:
            self.warnings.append(note)
        store.write(shard, ids, normalise(raw, self.model))
        return len(docs)

    # -- 3. relevant passages -------------------------------------------------------------------------------
    def relevant_scores(self, stores: dict[str, tuple[ShardStore, int]]) -> np.ndarray:
        """(Q, R) canonical scores of the relevant passages; NaN where a passage is not in the corpus."""
        wanted: dict[str, set[str]] = {}
        for rid in self.queries.rel_ids[self.queries.rel_ids != ""]:
            lang, _, doc = str(rid).partition(":")
            wanted.setdefault(lang, set()).add(doc)
        found: dict[str, np.ndarray] = {}
        error = None
        try:
            for lang, (store, n) in stores.items():
                want = np.array(sorted(wanted.get(lang, ())), dtype=str)
                for i in range(n):
                    if self.world.owns(i):
                        ids = store.read_ids(i)  # verified: a bad shard stops here, before any scoring
                        hit = _members(ids, want)
                        if len(hit):
                            vecs = store.rows(i, hit)
                            found.update({f"{lang}:{ids[h]}": vecs[j] for j, h in enumerate(hit)})
        except XlirError as exc:
            error = str(exc)
        self.world.agree(error, "reading the shards")
        for part in self.world.all_gather(found):
            found.update(part)
        rel = self.queries.rel_ids
        scores = np.full(rel.shape, np.nan)
        rows, slots = np.nonzero(rel != "")
        present = np.array([str(rel[r, s]) in found for r, s in zip(rows, slots)], dtype=bool)
        self.data.notes["relevant_not_in_corpus"] = int((~present).sum())
        r, s = rows[present], slots[present]
        if len(r):
            vecs = np.stack([found[str(rel[a, b])] for a, b in zip(r, s)]).astype(np.float32)
            scores[r, s] = canonical_scores(self.q[r], vecs)
        return scores

    # -- 4. streaming ---------------------------------------------------------------------------------------
    def score_dense(self, stores: dict[str, tuple[ShardStore, int]], rel_scores: np.ndarray) -> None:
        start = time.perf_counter()
        self.states = {s: StreamState(self.queries.rel_ids, rel_scores, self.k[s]) for s in self.settings}
        q_norm = np.linalg.norm(self.q.astype(np.float64), axis=1)
        bound = error_bound(self.q.shape[1])
        all_rows = np.arange(len(self.queries.ids))
        tiles = TileScorer(self.q, self.device)
        sources: list[tuple[ShardStore, int]] = []  # a pool reference is source << 32 | column in the shard
        error = None
        mine = [(lang, store, i) for lang, (store, n) in stores.items() for i in range(n) if self.world.owns(i)]
        dim = self.q.shape[1]
        try:
            # the next shard is read and verified in a thread while this one is scored (I/O and hashing release
            # the GIL); at most two shards are in memory
            with tiles, ThreadPoolExecutor(max_workers=1) as reader:
                pending = reader.submit(mine[0][1].read, mine[0][2], dim) if mine else None
                for at, (lang, store, i) in enumerate(mine):
                    waited = time.perf_counter()
                    shard = pending.result()
                    self.read_wait_seconds += time.perf_counter() - waited
                    if at + 1 < len(mine):
                        pending = reader.submit(mine[at + 1][1].read, mine[at + 1][2], dim)
                    self._score_shard(lang, store, i, shard, tiles, sources, q_norm, bound, all_rows)
            for state in self.states.values():
                state.finalize(partial(self._resolve, sources))
        except XlirError as exc:
            error = str(exc)
        self.world.agree(error, "scoring")
        self.score_seconds += time.perf_counter() - start

    def _score_shard(self, lang, store, i, shard, tiles, sources, q_norm, bound, all_rows) -> None:
        own = self.queries.rows_of(lang)
        max_norm = store.max_norm(i)
        source = len(sources)
        sources.append((store, i))
        union = all_rows if "multilingual" in self.settings else own
        own_mask = np.zeros(len(all_rows), dtype=bool)
        own_mask[own] = True
        # per setting, which query rows it scores (None: every row of the tile)
        settings = [(self.states[s], own_mask if s == "monolingual" and len(union) > len(own) else None)
                    for s in self.settings]  # fmt: skip

        def prepare(block: np.ndarray) -> list[_Target]:
            eps = bound * q_norm[block] * max_norm
            targets = []
            for state, allowed in settings:
                keep = np.ones(len(block), dtype=bool) if allowed is None else allowed[block]
                if keep.any():
                    targets.append(_Target.of(state, block[keep], keep, eps[keep]))
            return targets

        for c0, vecs, targets, found in tiles.map(shard.vectors, union, prepare):
            ns_ids = _Prefixed(f"{lang}:", shard.ids[c0 : c0 + len(vecs)])
            for target, result in zip(targets, found):
                target.apply(result, ns_ids, partial(_canonical_pairs, self.q, target.rows, vecs), source, c0)
        self.advance(f"score {lang} shard {i}", len(shard.ids))

    def _resolve(self, sources, rows: np.ndarray, refs: np.ndarray, fast: np.ndarray):
        """Canonical scores and namespaced ids of pool survivors, read back from their shards."""
        exact = np.empty(len(refs))
        parts = []
        for s, at, col in _by_source(refs):
            store, shard = sources[s]
            exact[at] = canonical_scores(self.q[rows[at]], store.rows(shard, col).astype(np.float32))
            parts.append((at, np.char.add(f"{store.corpus_key['language']}:", store.read_ids(shard)[col])))
        width = max((part.dtype.itemsize // 4 for _, part in parts), default=1)  # UCS-4: 4 bytes per character
        ids = np.empty(len(refs), dtype=f"<U{width}")
        for at, part in parts:
            ids[at] = part
        return exact, ids

    def score_retriever(self) -> None:
        """A scoring plugin (BM25): one in-memory index per pool, scores from the plugin are canonical."""
        start = time.perf_counter()
        nan = np.full(self.queries.rel_ids.shape, np.nan)
        self.states = {s: StreamState(self.queries.rel_ids, nan.copy(), self.k[s]) for s in self.settings}
        pools = []
        if "monolingual" in self.settings:
            pools += [([lang], self.queries.rows_of(lang), "monolingual") for lang in self.data.languages]
        if "multilingual" in self.settings:
            pools.append((self.data.languages, np.arange(len(self.queries.ids)), "multilingual"))
        present: set[str] = set()
        pool_ids: list[np.ndarray] = []
        for langs, rows, setting in pools:
            ns_ids, docs = self._index_docs(langs)
            present.update(ns_ids)
            index = self.model.call("build_index", docs)
            self.advance(f"index {'+'.join(langs)}", 0)
            column = {d: c for c, d in enumerate(ns_ids)}
            ns_array = np.array(ns_ids, dtype=str)
            source = len(pool_ids)
            pool_ids.append(ns_array)
            state = self.states[setting]
            step = max(1, BLOCK_ELEMENTS // max(1, len(ns_ids)))
            for lang in langs:
                lang_rows = rows[self.queries.lang[rows] == lang]
                for lo in range(0, len(lang_rows), step):
                    block = lang_rows[lo : lo + step]
                    texts = [self.queries.texts[i] for i in block]
                    raw = self.model.call("score", texts, language=lang, target=index)
                    scores = check_matrix(raw, len(texts), self.model.name, f"score(language={lang!r})", len(ns_ids))
                    scores = np.asarray(scores, dtype=np.float32).astype(np.float64)  # trec_eval's precision
                    state.set_relevant(block, _relevant_from_matrix(self.queries.rel_ids[block], scores, column))
                    _process(state, block, HostTile(scores), np.zeros(len(block)), ns_array, None, source, 0)
                    self.advance(f"score {lang} ({setting})", len(block))
        for state in self.states.values():
            state.finalize(lambda rows, refs, fast: (fast, _pool_ids(pool_ids, refs)))
        rel = self.queries.rel_ids
        self.data.notes["relevant_not_in_corpus"] = int(sum(str(x) not in present for x in rel[rel != ""]))
        self.score_seconds += time.perf_counter() - start

    def _index_docs(self, langs: list[str]) -> tuple[list[str], list[dict]]:
        limit = int(os.environ.get(INDEX_LIMIT_ENV, DEFAULT_INDEX_LIMIT))
        ns_ids, docs = [], []
        for lang in langs:
            before = len(docs)
            for doc_id, title, text in self.data.corpora[lang]:
                if len(docs) >= limit:
                    raise XlirError(
                        f"{self.model.name} holds its index in memory and {'+'.join(langs)} has more than {limit:,} "
                        f"passages; choose smaller languages (--suite miracl:sw,yo) or raise {INDEX_LIMIT_ENV} "
                        "if this machine has the memory"
                    )
                ns_ids.append(f"{lang}:{doc_id}")
                docs.append(_doc(doc_id, title, text, lang))
            self.passages[lang] = len(docs) - before
        return ns_ids, docs

    # -- 5. reduction and measures --------------------------------------------------------------------------
    def reduce(self) -> None:
        gathered = self.world.all_gather(self.states if not self.world.is_main else None)
        if self.world.is_main:
            for other in gathered[1:]:
                for setting, state in other.items():
                    self.states[setting].merge(state)
        passages = self.world.all_gather(self.passages)
        for p in passages:
            for lang, n in p.items():
                self.passages[lang] = max(self.passages.get(lang, 0), n)

    def run(self, use_cache: bool) -> None:
        if self.model.kind == "dense":
            self.encode_queries(use_cache)
            stores = {}
            for lang in self.data.languages:
                n = self.encode_corpus(lang)
                stores[lang] = (self.store(lang), n)
            rel_scores = self.relevant_scores(stores)
            self.score_dense(stores, rel_scores)
        else:
            self.score_retriever()
        self.reduce()

    def outcome(self) -> dict:
        """The ``settings`` section of the result (rank 0 only)."""
        out = {}
        for setting, state in self.states.items():
            values = metrics.compute_all(state.ranks(), self.queries.rel_gains)
            per_language = {}
            for lang in self.data.languages:
                rows = self.queries.rows_of(lang)
                per_language[lang] = {k: float(np.mean(v[rows])) for k, v in values.items()} | {"queries": len(rows)}
            macro = {k: float(np.mean([p[k] for p in per_language.values()])) for k in values}
            if setting == "monolingual":
                out[setting] = {"metrics": macro | {"queries": len(state.counts), "groups": len(per_language)},
                                "per_language": per_language}  # fmt: skip
            else:
                overall = {k: float(np.mean(v)) for k, v in values.items()} | {"queries": len(state.counts)}
                out[setting] = {
                    "metrics": overall,
                    "macro_over_languages": macro,
                    "per_language": per_language,
                    "bias": self._bias(state),
                }
            self.per_query[setting] = values["mAP"]
        return out

    def _bias(self, state: StreamState) -> dict:
        """Top-k language mix of the multilingual setting (MIRACL judges passages in the query's language only)."""
        own = np.array([[str(x).partition(":")[0] for x in row] for row in state.top_ids])
        q_lang = self.queries.lang[:, None]
        out: dict = {}
        for k in BIAS_CUTOFFS:
            filled = np.arange(state.k)[None, :k] < np.minimum(state.top_n, k)[:, None]
            other = (own[:, :k] != q_lang) & filled
            share = other.sum(axis=1) / np.maximum(filled.sum(axis=1), 1)
            out[f"other_language@{k}"] = float(share.mean())
            out[f"other_language@{k}_per_language"] = {
                lang: float(share[self.queries.rows_of(lang)].mean()) for lang in self.data.languages
            }
        top1_relevant = np.array(
            [state.top_n[i] > 0 and state.top_ids[i, 0] in set(self.queries.rel_ids[i]) for i in range(len(own))]
        )
        top1_same = own[:, 0] == self.queries.lang
        out["top1"] = {
            "relevant_same": float((top1_relevant & top1_same).mean()),
            "relevant_other": float((top1_relevant & ~top1_same).mean()),
            "irrelevant_same": float((~top1_relevant & top1_same).mean()),
            "irrelevant_other": float((~top1_relevant & ~top1_same).mean()),
        }
        out["lang_pref@1"] = float(top1_same.mean())
        # rank distance needs relevant passages in several languages; MIRACL's qrels have them in one only
        out["rank_distance"] = None
        out["rank_distance_queries"] = 0
        out["languages"] = len(self.data.languages)
        return out

    def runs(self) -> dict[str, list[tuple[str, list[str], list[float]]]]:
        """TREC runs per setting (monolingual: one per language, MIRACL's own ids)."""
        out: dict[str, list] = {}
        for setting, state in self.states.items():
            if not state.k or not self.run_depth:
                continue
            for i, qid in enumerate(self.queries.ids):
                n = min(int(state.top_n[i]), self.run_depth)
                docs = [str(x) for x in state.top_ids[i, :n]]
                scores = [float(x) for x in state.top_scores[i, :n]]
                if setting == "monolingual":
                    lang = str(self.queries.lang[i])
                    out.setdefault(f"monolingual-{lang}", []).append(
                        (self.queries.raw_ids[i], [d.partition(":")[2] for d in docs], scores)
                    )
                else:
                    out.setdefault("multilingual", []).append((qid, docs, scores))
        return out

    def qrels(self, run_name: str) -> list[tuple[str, str, int]]:
        """Every judged pair (0s too) for a run written by :meth:`runs`, ids as that run spells them."""
        rows = []
        for lang in self.data.languages:
            if run_name not in (f"monolingual-{lang}", "multilingual"):
                continue
            for qid, judged in self.data.topics[lang].qrels.items():
                for doc, grade in judged.items():
                    if run_name == "multilingual":
                        rows.append((f"{lang}:{qid}", f"{lang}:{doc}", grade))
                    else:
                        rows.append((qid, doc, grade))
        return rows


def _canonical_pairs(q: np.ndarray, rows: np.ndarray, vecs: np.ndarray, row_pos: np.ndarray, cols: np.ndarray):
    return canonical_scores(q[rows[row_pos]], vecs[cols])


def _members(ids: np.ndarray, sorted_wanted: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` found in ``sorted_wanted``: a binary search per id (``np.isin`` sorts the shard's ids
    every time, ~4x slower on strings)."""
    if not len(sorted_wanted):
        return np.empty(0, dtype=np.int64)
    at = np.searchsorted(sorted_wanted, ids)
    at[at == len(sorted_wanted)] = 0
    return np.flatnonzero(sorted_wanted[at] == ids)


def _doc(doc_id: str, title: str, text: str, lang: str) -> dict:
    """What a plugin sees of a MIRACL passage: ``text`` is MIRACL's "title text"; ``passage`` the text alone."""
    return {
        "text": f"{title} {text}" if title else text,
        "title": title,
        "passage": text,
        "context": "",
        "language": lang,
        "doc_id": doc_id,
    }


def _passages(store: ShardStore, n: int) -> int:
    return sum(store.count(i) for i in range(n))


def _relevant_from_matrix(rel_ids: np.ndarray, scores: np.ndarray, column: dict[str, int]) -> np.ndarray:
    out = np.full(rel_ids.shape, np.nan)
    for r in range(rel_ids.shape[0]):
        for s in range(rel_ids.shape[1]):
            c = column.get(str(rel_ids[r, s]))
            if c is not None:
                out[r, s] = scores[r, c]
    return out


class _Prefixed:
    """A shard's ids seen namespaced (``<lang>:<id>``), built only for the positions asked for."""

    def __init__(self, prefix: str, ids: np.ndarray) -> None:
        self.prefix, self.ids = prefix, ids

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        return np.char.add(self.prefix, self.ids[positions])


def _by_source(refs: np.ndarray):
    """Decode pool references (``source << 32 | column``): yield (source, positions in refs, columns)."""
    src, col = refs >> 32, refs & 0xFFFFFFFF
    for s in np.unique(src):
        at = np.flatnonzero(src == s)
        yield int(s), at, col[at]


def _pool_ids(pool_ids: list[np.ndarray], refs: np.ndarray) -> np.ndarray:
    out = np.empty(len(refs), dtype=object)
    for s, at, col in _by_source(refs):
        out[at] = pool_ids[s][col]
    return out.astype(str)


@dataclass
class _Target:
    """One setting's rows of one tile, with its thresholds taken when the tile was handed out.

    The thresholds are a snapshot: a tile may be scored (in a worker thread) while earlier tiles are still being
    folded into the state. That is safe because thresholds only rise: an older one lets more candidates through,
    never fewer, and :meth:`StreamState.update` treats every candidate exactly.
    """

    state: StreamState
    rows: np.ndarray
    keep: np.ndarray
    eps: np.ndarray
    count_thr: np.ndarray
    topk_thr: np.ndarray
    short: np.ndarray | None

    @classmethod
    def of(cls, state: StreamState, rows: np.ndarray, keep: np.ndarray, eps: np.ndarray) -> _Target:
        return cls(state, rows, keep, eps, state.count_threshold(rows, eps), state.topk_threshold(rows, eps),
                   state.short_rows(rows))  # fmt: skip

    def find(self, tile) -> tuple:
        """(top-k threshold, certain counts or None, candidates) of this target's rows in ``tile``: touches no
        shared state, so it can run in a worker thread."""
        part = tile if self.keep.all() else tile.subset(self.keep)
        topk_thr, k = self.topk_thr, self.state.k
        if self.short is not None and self.short.any() and part.n_cols > k:
            # rows with fewer than k pool entries: k passages of this block have fast scores >= its k-th
            topk_thr = topk_thr.copy()
            kth = part.kth(k)[self.short]
            topk_thr[self.short] = np.maximum(topk_thr[self.short], kth - 2 * self.eps[self.short])
        if isinstance(part, DeviceTile) and self.state.valid[self.rows].any():
            # on the device: certain counts per relevant passage, and only the error-band and top-k candidates back
            rel = self.state.rel_scores[self.rows]
            counted, cand = part.split(rel + self.eps[:, None], rel - self.eps[:, None], topk_thr)
            return topk_thr, counted, cand
        return topk_thr, None, part.candidates(np.minimum(self.count_thr, topk_thr))

    def apply(self, found: tuple, ids, canonical, source: int, col0: int) -> None:
        """Fold what :meth:`find` returned into the state (main thread)."""
        topk_thr, counted, (cand_row, cand_col, cand_score) = found
        refs = (np.int64(source) << 32) | (cand_col + col0)
        self.state.update(self.rows, cand_row, cand_col, cand_score, self.eps, topk_thr, ids, canonical, refs,
                          counted)  # fmt: skip


def _process(state: StreamState, rows, tile, eps: np.ndarray, ids, canonical, source: int, col0: int) -> None:
    """One block scored in the calling thread: thresholds, the candidates above them, the exact update."""
    target = _Target.of(state, rows, np.ones(len(rows), dtype=bool), eps)
    target.apply(target.find(tile), ids, canonical, source, col0)


class HostTile:
    """A block of scores in host memory (numpy)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores
        self.n_cols = scores.shape[1]

    def subset(self, keep: np.ndarray) -> HostTile:
        return HostTile(self.scores[keep])

    def kth(self, k: int) -> np.ndarray:
        """Each row's k-th largest score."""
        return np.partition(self.scores, self.n_cols - k, axis=1)[:, self.n_cols - k].astype(np.float64)

    def candidates(self, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, score as float64) of the entries >= their row's threshold, in row-major order."""
        if self.scores.dtype == np.float32:
            thr = _down32(thr).astype(np.float32)  # same selection as the float64 comparison, at float32 speed
        flat = np.flatnonzero(self.scores >= thr[:, None])  # 1-d: far cheaper than a 2-d nonzero
        row, col = np.divmod(flat, self.n_cols)
        return row, col, self.scores.reshape(-1)[flat].astype(np.float64)


class DeviceTile:
    """A block of float32 scores on a torch device: thresholds go to the device, only candidates come back."""

    def __init__(self, scores) -> None:
        self.scores = scores
        self.n_cols = scores.shape[1]

    def subset(self, keep: np.ndarray) -> DeviceTile:
        import torch

        return DeviceTile(self.scores[torch.from_numpy(np.flatnonzero(keep)).to(self.scores.device)])

    def kth(self, k: int) -> np.ndarray:
        return self.scores.topk(k, dim=1).values[:, -1].double().cpu().numpy()

    def candidates(self, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._fetch(self.scores >= self._f32(_down32(thr))[:, None])

    def split(self, hi: np.ndarray, lo: np.ndarray, topk_thr: np.ndarray):
        """(counts, candidates): per row and relevant slot the number of scores above ``hi`` (certain wins), and the
        entries that are either at least the ``lo`` of a slot they do not certainly beat, or >= ``topk_thr``."""
        hi32 = np.where(np.isnan(hi), np.inf, _up32(hi))  # smallest float32 > hi: F > hi  <=>  F >= hi32
        lo32 = np.where(np.isnan(lo), np.inf, _down32(np.nan_to_num(lo, nan=np.inf)))
        mask = self.scores >= self._f32(_down32(topk_thr))[:, None]
        count = self._split_per_slot if hi32.shape[1] <= SLOT_PASSES_MAX else self._split_sorted
        return count(hi32, lo32, mask), self._fetch(mask)  # count() adds the error-band entries to mask

    def _split_per_slot(self, hi32: np.ndarray, lo32: np.ndarray, mask):
        """One comparison pass per slot: no atomics (3-4x the sorted variant's speed for 2 slots on an H200)."""
        import torch

        hi, lo = self._f32(hi32), self._f32(lo32)
        counts = torch.empty(hi.shape, dtype=torch.int64, device=self.scores.device)
        for j in range(hi.shape[1]):
            beats = self.scores >= hi[:, j : j + 1]
            counts[:, j] = beats.sum(1)
            mask |= ~beats & (self.scores >= lo[:, j : j + 1])
        return counts.cpu().numpy()

    def _split_sorted(self, hi32: np.ndarray, lo32: np.ndarray, mask):
        """Many slots: one ``searchsorted`` of every score into its row's sorted ``hi`` values, then a
        ``scatter_add`` of the buckets (its adds pile onto few counters, but it reads the tile once)."""
        import torch

        order = np.argsort(hi32, axis=1, kind="stable")  # one eps per row: lo sorts the same way
        hs, ls = np.take_along_axis(hi32, order, 1), np.take_along_axis(lo32, order, 1)
        width = hs.shape[1]
        bucket = torch.searchsorted(self._f32(hs), self.scores, right=True)  # slots (sorted) each score beats
        n = torch.zeros((len(hs), width + 1), dtype=torch.int64, device=self.scores.device)
        n.scatter_add_(1, bucket, torch.ones_like(bucket))
        beats_sorted = n.flip(1).cumsum(1).flip(1)[:, 1:].cpu().numpy()  # scores >= hs[:, j]
        counts = np.zeros_like(beats_sorted)
        np.put_along_axis(counts, order, beats_sorted, 1)
        inside = bucket < width  # scores that do not certainly beat every relevant passage
        low = torch.gather(self._f32(ls), 1, bucket.clamp_(max=width - 1))
        mask |= inside & (self.scores >= low)
        return counts

    def _f32(self, x: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.scores.device)

    def _fetch(self, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flat = mask.view(-1).nonzero().squeeze(1)
        values = self.scores.view(-1)[flat].double().cpu().numpy()
        row, col = np.divmod(flat.cpu().numpy(), self.n_cols)
        return row, col, values


class TileScorer:
    """Score tiles of (queries x passages): numpy on CPU, torch on a CUDA device (queries and shard resident)."""

    def __init__(self, q: np.ndarray, device: str, on_torch: bool | None = None, workers: int | None = None) -> None:
        self.q, self.device = q, device
        self.workers = workers or cpu_workers()
        self._stack: ExitStack | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.cuda = device.startswith("cuda") if on_torch is None else on_torch
        self.rows, self.cols = (CUDA_TILE_ROWS, CUDA_TILE_COLS) if device.startswith("cuda") else (TILE_ROWS, TILE_COLS)
        self.q_dev = None
        if self.cuda:
            import torch

            torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would break the float32 error bound
            self.q_dev = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)).to(device)

    def __enter__(self) -> TileScorer:
        """On CPU with several workers: the worker threads, and BLAS single-threaded, for the whole scoring pass
        (not per shard: starting threads and changing BLAS threads cost tens of ms each)."""
        if not self.cuda and self.workers > 1:
            self._stack = ExitStack()
            self._stack.enter_context(_threadpools().limit(limits=1, user_api="blas"))  # workers are the parallelism
            self._pool = self._stack.enter_context(ThreadPoolExecutor(max_workers=self.workers))
        return self

    def __exit__(self, *exc) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = self._pool = None

    def map(self, vectors: np.ndarray, union: np.ndarray, prepare: Callable[[np.ndarray], list[_Target]]):
        """Yield (first column, host vectors, targets, what each target found) over a shard, tile by tile in order.

        ``prepare(query rows)`` is called in this thread when a tile is handed out. On CUDA the shard is copied to
        the device once and tiles are scored one after another. On CPU, tiles are scored by ``workers`` threads,
        each with a single-threaded BLAS, while this thread folds finished tiles into the state: the threshold
        pass and the bookkeeping then overlap the matrix products instead of leaving cores idle between them.
        """
        if self.cuda:
            yield from self._device_map(vectors, union, prepare)
            return
        blocks = [union[lo : lo + self.rows] for lo in range(0, len(union), self.rows)]
        q_blocks = [self.q[b] for b in blocks]
        jobs = [(c0, at) for c0 in range(0, len(vectors), self.cols) for at in range(len(blocks))]
        shape = (min(len(union), self.rows), min(len(vectors), self.cols))
        buffers: queue.SimpleQueue = queue.SimpleQueue()  # one tile buffer per worker: no page faults per tile
        for _ in range(self.workers):
            buffers.put(np.empty(shape, dtype=np.float32))

        def score(c0: int, at: int, targets: list[_Target]) -> list:
            vecs = vectors[c0 : c0 + self.cols]
            buffer = buffers.get()
            try:
                out = buffer.reshape(-1)[: len(blocks[at]) * len(vecs)].reshape(len(blocks[at]), len(vecs))
                tile = HostTile(np.matmul(q_blocks[at], vecs.T, out=out))
                return [t.find(tile) for t in targets]
            finally:
                buffers.put(buffer)

        if self._pool is None:  # one worker, or used outside `with`: tiles in this thread
            for c0, at in jobs:
                targets = prepare(blocks[at])
                yield c0, vectors[c0 : c0 + self.cols], targets, score(c0, at, targets)
            return
        pending: deque = deque()
        for c0, at in jobs:
            targets = prepare(blocks[at])
            pending.append((c0, targets, self._pool.submit(score, c0, at, targets)))
            if len(pending) > self.workers:
                c0_done, t_done, future = pending.popleft()
                yield c0_done, vectors[c0_done : c0_done + self.cols], t_done, future.result()
        while pending:
            c0_done, t_done, future = pending.popleft()
            yield c0_done, vectors[c0_done : c0_done + self.cols], t_done, future.result()

    def _device_map(self, vectors: np.ndarray, union: np.ndarray, prepare):
        import torch

        with torch.no_grad():
            v_dev = torch.from_numpy(vectors).to(self.device)
            for c0 in range(0, len(vectors), self.cols):
                vt = v_dev[c0 : c0 + self.cols].T
                for lo in range(0, len(union), self.rows):
                    block = union[lo : lo + self.rows]
                    tile = DeviceTile(self.q_dev[torch.from_numpy(block).to(self.device)] @ vt)
                    targets = prepare(block)
                    yield c0, vectors[c0 : c0 + self.cols], targets, [t.find(tile) for t in targets]


@functools.cache
def _threadpools():
    """The process's thread pools (BLAS among them), found once: scanning the loaded libraries costs ~50 ms."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def cpu_workers() -> int:
    """Tile workers on CPU: the cores this process may use (at most 16: the main thread folds every tile)."""
    return max(1, min(16, usable_cores()))
