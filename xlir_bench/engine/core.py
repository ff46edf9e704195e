"""The evaluation engine: one exact pass over every corpus, for every suite, device and scale.

1. Queries are encoded (rank 0; they are small) and broadcast.
2. Each language's corpus is encoded into verified shards (:mod:`xlir_bench.shards`); under torchrun each rank
   encodes the shards it owns. A killed run resumes at the first unfinished shard. Without a cache (``--no-cache``,
   or a plugin without a revision) the shards go to a scratch folder removed at the end: memory stays bounded by a
   shard whatever the corpus, and nothing is read back from an earlier run.
3. The relevant passages' vectors are looked up in the shards and their canonical scores computed
   (:mod:`xlir_bench.metrics.stream` says why "canonical": a pair's score must not depend on the matrix shape).
4. Every shard is scored in tiles against the union of the queries of every pool that holds its language
   (:mod:`.pools`): one matrix product per (query, passage) pair, whatever the number of settings. Each pool keeps
   exact counts of what beats its relevant passages and a running top-k.
5. Counts and top-k lists are merged on rank 0, which measures every pool (:mod:`.outcome`).

Retrievers (BM25) score each pool from an in-memory index of the pool's passages (their IDF is the pool's), with
the same counting; their scores are canonical as returned (rounded to float32, as trec_eval holds them).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from ..distributed import World
from ..errors import XlirError
from ..metrics.stream import StreamState, canonical_pairs, canonical_scores, error_bound
from ..plugins import LoadedModel, check_matrix
from ..shards import ShardStore
from .data import EvalSuite
from .encode import encode_all, normalise, zero_vector_warning
from .pools import Pool, plan, pools_of
from .tiles import HostTile, Target, TileScorer, process

DEFAULT_SHARD_SIZE = 100_000
BLOCK_ELEMENTS = 1 << 23  # retriever scores held at once (queries x pool)
BIAS_CUTOFFS = (10,)  # other_language@k; the top 1 comes with it
INDEX_LIMIT_ENV = "XLIR_BENCH_MAX_INDEX_PASSAGES"
DEFAULT_INDEX_LIMIT = 2_000_000
TIE_RULE = "canonical float32 scores; equal scores ordered by pool doc id descending (trec_eval)"
ENGINE = "engine-1"  # the tag results carry: which definition of scores and ties made them

Advance = Callable[[str, int], None]


class Engine:
    """One (model, suite) evaluation on this rank; rank 0 ends with every pool's exact state."""

    def __init__(
        self,
        model: LoadedModel,
        suite: EvalSuite,
        *,
        settings: tuple[str, ...],
        batch_size: int,
        identity: dict | None,
        cache_root: Path,
        shard_size: int = DEFAULT_SHARD_SIZE,
        shard_dtype: str = "float32",
        run_depth: int | None = None,
        world: World | None = None,
        device: str = "cpu",
        advance: Advance = lambda label, n: None,
    ) -> None:
        self.model, self.suite, self.settings = model, suite, settings
        self.batch_size, self.shard_size, self.shard_dtype = batch_size, shard_size, shard_dtype
        self.run_depth, self.world, self.device, self.advance = run_depth, world or World(), device, advance
        self.identity, self.cache_root = identity, cache_root
        self.pools: list[Pool] = plan(suite.queries, suite.languages, settings)
        self.states: list[StreamState | None] = [None] * len(self.pools)
        self.encode_seconds = self.score_seconds = self.read_wait_seconds = 0.0
        self.passages: dict[str, int] = {}
        self.warnings: list[str] = []
        self.q: np.ndarray | None = None
        self._queries_cached = False
        self._cosine = model.similarity == "cosine"
        self._doc_lang: list[tuple[np.ndarray, np.ndarray]] = []  # (pool ids, languages) of resolved top-k entries

    def k_of(self, pool: Pool) -> int:
        """Top-k kept per query: the saved run's depth, and in the multilingual pool enough for the bias cut-offs."""
        if pool.setting == "multilingual":
            return max(BIAS_CUTOFFS[-1], self.run_depth or 0)
        return self.run_depth or 0

    # -- the run --------------------------------------------------------------------------------------------
    def run(self) -> None:
        scratch = None
        root, identity = self.cache_root, self.identity
        if identity is not None and not _writable(root):
            self.warnings.append(f"vector cache switched off: {root} is not a writable folder (set "
                                 "XLIR_BENCH_CACHE to one); vectors went to a temporary folder")  # fmt: skip
            identity = None
        if identity is None:  # no cache: shards in a private folder, removed at the end
            base = root if _writable(root) else Path(tempfile.gettempdir()) / "xlir-bench"
            scratch = base / "scratch" / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            root, identity = scratch, {"model": self.model.label, "scratch": scratch.name}
        try:
            if self.model.kind == "dense":
                self.encode_queries(root, identity)
                stores = {lang: self.encode_corpus(lang, root, identity) for lang in self.suite.languages}
                self.score_dense(stores, self.relevant_scores(stores))
            else:
                self.score_retriever()
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        self.reduce()

    def store(self, root: Path, identity: dict, key: dict) -> ShardStore:
        return ShardStore(root, identity, {**key, "shard_size": self.shard_size}, self.shard_dtype)

    def corpus_store(self, lang: str, root: Path, identity: dict) -> ShardStore:
        """Where ``lang``'s corpus vectors live: keyed by the model identity and the corpus content."""
        fingerprint = self.suite.corpora[lang].fingerprint()
        return self.store(root, identity, {"kind": "corpus", "suite": self.suite.name, **fingerprint})

    def owns(self, lang: str, shard: int) -> bool:
        """Shards are dealt round-robin from a per-language offset, so small corpora spread over the ranks too."""
        return (zlib.crc32(lang.encode()) + shard) % self.world.size == self.world.rank

    # -- 1. queries -----------------------------------------------------------------------------------------
    def encode_queries(self, root: Path, identity: dict) -> None:
        start = time.perf_counter()
        error, q = None, None
        if self.world.is_main:
            try:
                q = self._query_vectors(root, identity)
            except XlirError as exc:
                error = str(exc)
        self.world.agree(error, "encoding the queries")
        self.q = self.world.broadcast(q)
        self.encode_seconds += time.perf_counter() - start

    def _query_vectors(self, root: Path, identity: dict) -> np.ndarray:
        queries, dim = self.suite.queries, None
        parts: dict[str, np.ndarray] = {}
        for lang in self.suite.languages:
            rows = queries.rows_of(lang)
            texts = [queries.texts[i] for i in rows]
            ids = [queries.ids[i] for i in rows]
            store = self.store(root, identity, {"kind": "queries", "language": lang, "content": _digest(ids, texts)})
            cached = None
            if store.complete_count() == 1 and len(rows):
                try:
                    cached = store.read(0, dim).vectors
                    _checked_norm(store, 0, cached, self._cosine)
                except XlirError as exc:
                    store.discard(0)
                    cached = None
                    self.warnings.append(f"discarded cached {lang} query vectors: "
                                         f"{str(exc).split('; it was removed')[0]}; encoded them again")  # fmt: skip
            if cached is not None:
                self._queries_cached = True
                parts[lang] = cached
                self.advance(f"encode queries {lang} (cached)", len(rows))
            else:
                tick = partial(self.advance, f"encode queries {lang}")
                raw = encode_all(self.model, self.batch_size, "encode_queries", lang, texts, None, tick)
                if dim is not None and len(rows) and raw.shape[1] != dim:
                    self.q = np.zeros((0, dim), dtype=np.float32)
                    self._check_dimension(raw.shape[1], store)
                self.warnings += [w for w in [zero_vector_warning(raw, f"{lang} queries", self.model)] if w]
                parts[lang] = normalise(raw, self.model)
                if len(rows):
                    store.write(0, ids, parts[lang])
                    store.mark_complete(1, len(rows))
            if len(rows):
                dim = parts[lang].shape[1]
        q = np.zeros((len(queries), dim or 1), dtype=np.float32)
        for lang, vectors in parts.items():
            if len(vectors) and vectors.shape[1] != q.shape[1]:
                raise XlirError(f"model plugin {self.model.name!r} returned query vectors of different dimensions")
            q[queries.rows_of(lang)] = vectors
        return q

    # -- 2. corpus shards -----------------------------------------------------------------------------------
    def encode_corpus(self, lang: str, root: Path, identity: dict) -> tuple[ShardStore, int]:
        """Encode this rank's missing shards of ``lang``; return its store and number of shards."""
        start = time.perf_counter()
        corpus = self.suite.corpora[lang]
        store = self.corpus_store(lang, root, identity)
        done = store.complete_count()
        if done is not None:
            self.passages[lang] = sum(store.count(i) for i in range(done))
            self.advance(f"encode {lang} (cached)", self.passages[lang])
            return store, done
        error, shard, ids, docs, total = None, 0, [], [], 0
        mine = self.owns(lang, 0) and not store.has(0)
        try:
            for doc_id, item in corpus:
                if mine:
                    ids.append(doc_id)
                    docs.append(item)
                total += 1
                if total % self.shard_size == 0:
                    if mine:
                        self._write_shard(store, shard, ids, docs, lang)
                    shard, ids, docs = shard + 1, [], []
                    mine = self.owns(lang, shard) and not store.has(shard)
            if total % self.shard_size and mine:
                self._write_shard(store, shard, ids, docs, lang)
        except XlirError as exc:
            error = str(exc)
        self.world.agree(error, f"encoding the {lang} corpus")
        if total == 0:
            raise XlirError(f"the {self.suite.name} {lang} corpus is empty")
        n = -(-total // self.shard_size)
        if all(store.has(i) for i in range(n)):  # with a shared file system every rank sees every shard
            store.mark_complete(n, total)
        self.passages[lang] = total
        self.encode_seconds += time.perf_counter() - start
        return store, n

    def _write_shard(self, store: ShardStore, shard: int, ids: list[str], docs: list[dict], lang: str) -> None:
        with store.claim(shard):
            if store.has(shard, len(ids)):  # another run on this store finished it while this one waited
                self.advance(f"encode {lang} shard {shard} (done by another run)", len(ids))
                return
            self._encode_shard(store, shard, ids, docs, lang)

    def _encode_shard(self, store: ShardStore, shard: int, ids: list[str], docs: list[dict], lang: str) -> None:
        raw = encode_all(self.model, self.batch_size, "encode_corpus", lang, docs, None,
                         partial(self.advance, f"encode {lang} shard {shard}"))  # fmt: skip
        self._check_dimension(raw.shape[1], store)
        note = zero_vector_warning(raw, f"{lang} candidates in shard {shard}", self.model)
        if note:
            self.warnings.append(note)
        store.write(shard, ids, normalise(raw, self.model))

    def _check_dimension(self, dim: int, store: ShardStore) -> None:
        """Fresh vectors must have the queries' dimension. When the queries came from the store, the plugin changed
        its dimension without a new revision: every vector of this identity is stale, so it is removed (one line,
        and the next run encodes afresh) instead of blaming the plugin on every later run."""
        if self.q is None or dim == self.q.shape[1]:
            return
        if self._queries_cached:
            shutil.rmtree(store.folder.parent, ignore_errors=True)
            raise XlirError(
                f"stored vectors of {self.model.label!r} have dimension {self.q.shape[1]}, but the plugin "
                f"now returns {dim} under the same revision; they were removed: run the command again"
            )
        raise XlirError(f"model plugin {self.model.name!r} returned vectors of different dimensions "
                        f"[{self.q.shape[1]}, {dim}]")  # fmt: skip

    # -- 3. relevant passages -------------------------------------------------------------------------------
    def relevant_scores(self, stores: dict[str, tuple[ShardStore, int]]) -> np.ndarray:
        """(Q, R) canonical scores of the relevant passages; NaN where a passage is not in the corpus."""
        queries = self.suite.queries
        rel = queries.rel_ids
        found: dict[str, np.ndarray] = {}
        error = None
        try:
            for lang, (store, n) in stores.items():
                prefix = self.suite.prefix(lang)
                want = np.array(sorted({str(x)[len(prefix) :] for x in rel[queries.rel_lang == lang]}), dtype=str)
                for i in range(n):
                    if self.owns(lang, i):
                        try:
                            self._relevant_in(store, i, want, prefix, found)
                        except XlirError as exc:  # a damaged shard: encoded again here, before any scoring
                            self._heal(lang, store, i, str(exc))
                            self._relevant_in(store, i, want, prefix, found)
        except XlirError as exc:
            error = str(exc)
        self.world.agree(error, "reading the shards")
        for part in self.world.all_gather(found):
            found.update(part)
        scores = np.full(rel.shape, np.nan)
        rows, slots = np.nonzero(rel != "")
        present = np.array([str(rel[r, s]) in found for r, s in zip(rows, slots)], dtype=bool)
        self.suite.notes["relevant_not_in_corpus"] = int((~present).sum())
        r, s = rows[present], slots[present]
        if len(r):
            vecs = np.stack([found[str(rel[a, b])] for a, b in zip(r, s)]).astype(np.float32)
            scores[r, s] = canonical_scores(self.q[r], vecs)
        return scores

    def _relevant_in(self, store: ShardStore, i: int, want: np.ndarray, prefix: str, found: dict) -> None:
        ids = store.read_ids(i)  # verified
        hit = _members(ids, want)
        if len(hit):
            vecs = store.rows(i, hit, self.q.shape[1])
            _checked_norm(store, i, vecs, self._cosine)
            found.update({f"{prefix}{ids[h]}": vecs[j] for j, h in enumerate(hit)})

    def _new_state(self, i: int, rel_scores: np.ndarray) -> StreamState:
        """Pool ``i``'s state, keeping as deep a top-k as the deepest pool that shares it needs."""
        pool = self.pools[i]
        k = max(self.k_of(p) for j, p in enumerate(self.pools) if j == i or p.same_as == i)
        rel_ids = np.where(pool.in_pool, self.suite.queries.rel_ids[pool.rows], "")
        return StreamState(rel_ids, np.where(pool.in_pool, rel_scores[pool.rows], np.nan), k)

    # -- 4. scoring -----------------------------------------------------------------------------------------
    def score_dense(self, stores: dict[str, tuple[ShardStore, int]], rel_scores: np.ndarray) -> None:
        start = time.perf_counter()
        sources: list[tuple[ShardStore, int, str]] = []  # a top-k reference is source << 32 | column in the shard
        for i, pool in enumerate(self.pools):
            if pool.same_as is None:
                self.states[i] = self._new_state(i, rel_scores)
                self.states[i].resolver = partial(self._resolve, sources, pool.rows, record=False)
        n_queries = len(self.suite.queries)
        local = {i: self.pools[i].local(n_queries) for i, s in enumerate(self.states) if s is not None}
        q_norm = np.linalg.norm(self.q.astype(np.float64), axis=1)
        bound = error_bound(self.q.shape[1])
        tiles = TileScorer(self.q, self.device)
        mine = [(lang, store, i) for lang, (store, n) in stores.items() for i in range(n) if self.owns(lang, i)]
        dim, error = self.q.shape[1], None
        try:
            # the next shard is read and verified in a thread while this one is scored: at most two in memory
            with tiles, ThreadPoolExecutor(max_workers=1) as reader:
                pending = reader.submit(self._verified, *mine[0], dim) if mine else None
                for at, (lang, store, i) in enumerate(mine):
                    waited = time.perf_counter()
                    shard, max_norm = pending.result()
                    self.read_wait_seconds += time.perf_counter() - waited
                    if at + 1 < len(mine):
                        pending = reader.submit(self._verified, *mine[at + 1], dim)
                    sources.append((store, i, lang))
                    self._score_shard(lang, shard, tiles, len(sources) - 1, q_norm * bound * max_norm, local)
            for i, state in enumerate(self.states):
                if state is not None:
                    state.finalize(partial(self._resolve, sources, self.pools[i].rows))
        except XlirError as exc:
            error = str(exc)
        self.world.agree(error, "scoring")
        self.score_seconds += time.perf_counter() - start

    def _verified(self, lang: str, store: ShardStore, i: int, dim: int):
        """(shard ``i`` read and checked, its largest vector norm). A damaged shard (checksum, size, dimension,
        non-finite values, a norm bound below its vectors) is removed and encoded again in this run, with a
        warning: the numbers never come from a bad shard, and the run does not stop for it."""
        try:
            shard = store.read(i, dim)
            return shard, _checked_norm(store, i, shard.vectors, self._cosine)
        except XlirError as exc:
            self._heal(lang, store, i, str(exc))
            shard = store.read(i, dim)
            return shard, _checked_norm(store, i, shard.vectors, self._cosine)

    def _heal(self, lang: str, store: ShardStore, i: int, problem: str) -> None:
        """Encode shard ``i`` of ``lang`` again (the corpus is streamed up to it), after ``problem`` removed it."""
        store.discard(i)
        self.warnings.append(f"discarded cached shard {i} of {lang}: {problem.split('; it was removed')[0]}; "
                             "encoded it again")  # fmt: skip
        lo = i * self.shard_size
        ids, docs = [], []
        for n, (doc_id, item) in enumerate(self.suite.corpora[lang]):
            if n >= lo + self.shard_size:
                break
            if n >= lo:
                ids.append(doc_id)
                docs.append(item)
        self._write_shard(store, i, ids, docs, lang)

    def _score_shard(self, lang, shard, tiles: TileScorer, source: int, eps_all: np.ndarray, local) -> None:
        members = pools_of(self.pools, lang)
        n_queries = len(self.suite.queries)
        inside = {i: local[i] >= 0 for i in members}
        union = np.flatnonzero(np.logical_or.reduce([inside[i] for i in members])) if members else np.empty(0, int)
        prefix = self.suite.prefix(lang)
        exact_zero = not np.any(eps_all)

        def prepare(block: np.ndarray) -> list[Target]:
            targets = []
            for i in members:
                keep = inside[i][block]
                if keep.any():
                    rows = block[keep]
                    targets.append(Target.of(self.states[i], local[i][rows], rows, keep, eps_all[rows]))
            return targets

        if len(union) and n_queries:
            for c0, vecs, targets, found in tiles.map(shard.vectors, union, prepare):
                ns_ids = _Prefixed(prefix, shard.ids[c0 : c0 + len(vecs)])
                for target, result in zip(targets, found):
                    # an all-zero shard scores exactly 0 everywhere: its fast scores are canonical
                    canonical = partial(_canonical_pairs, self.q, target.qrows, vecs) if exact_zero is False else None
                    target.apply(result, ns_ids, canonical, source, c0)
        self.advance(f"score {lang} shard {shard.index}", len(shard.ids))

    def _resolve(self, sources, pool_rows: np.ndarray, rows: np.ndarray, refs: np.ndarray, fast: np.ndarray,
                 record: bool = True):  # fmt: skip
        """Canonical scores and pool ids of top-k survivors, read back from their shards. ``rows`` index the pool's
        state; ``pool_rows`` turns them into query rows."""
        exact = np.empty(len(refs))
        parts = []
        for s, at, col in _by_source(refs):
            store, shard, lang = sources[s]
            qrows = pool_rows[rows[at]]
            exact[at] = canonical_scores(self.q[qrows], store.rows(shard, col).astype(np.float32))
            parts.append((at, np.char.add(self.suite.prefix(lang), store.read_ids(shard)[col]), lang))
        width = max((part.dtype.itemsize // 4 for _, part, _ in parts), default=1)  # UCS-4: 4 bytes per character
        ids = np.empty(len(refs), dtype=f"<U{width}")
        for at, part, lang in parts:
            ids[at] = part
            if record:  # the languages of the final top-k entries, for the bias measures
                self._doc_lang.append((part, np.full(len(part), lang)))
        return exact, ids

    def score_retriever(self) -> None:
        """A scoring plugin (BM25): one in-memory index per pool; its scores are canonical as returned."""
        start = time.perf_counter()
        queries = self.suite.queries
        present: set[str] = set()
        pool_ids: list[np.ndarray] = []
        for i, pool in enumerate(self.pools):
            if pool.same_as is not None:
                continue
            state = self.states[i] = self._new_state(i, np.full(queries.rel_ids.shape, np.nan))
            state.resolver = lambda rows, refs, fast: (fast, _pool_ids(pool_ids, refs))
            ns_ids, langs, docs = self._index_docs(pool.languages)
            present.update(ns_ids)
            self.advance(f"index {'+'.join(pool.languages)}", 0)
            index = self.model.call("build_index", docs)
            column = {d: c for c, d in enumerate(ns_ids)}
            ns_array = np.array(ns_ids, dtype=str)
            self._doc_lang.append((ns_array, np.array(langs)))
            source = len(pool_ids)
            pool_ids.append(ns_array)
            step = max(1, BLOCK_ELEMENTS // max(1, len(ns_ids)))
            for lang in self.suite.languages:
                own = np.flatnonzero(queries.lang[pool.rows] == lang)  # the pool's rows asked in ``lang``
                for lo in range(0, len(own), step):
                    block = own[lo : lo + step]
                    texts = [queries.texts[r] for r in pool.rows[block]]
                    raw = self.model.call("score", texts, language=lang, target=index)
                    scores = check_matrix(raw, len(texts), self.model.name, f"score(language={lang!r})", len(ns_ids))
                    scores = np.asarray(scores, dtype=np.float32).astype(np.float64)  # trec_eval's precision
                    state.set_relevant(block, _relevant_from_matrix(state.rel_ids[block], scores, column))
                    process(state, block, HostTile(scores), np.zeros(len(block)), ns_array, None, source, 0)
                    self.advance(f"score {lang} ({pool.setting} {pool.name})", len(block))
        for state in self.states:
            if state is not None:
                state.finalize(lambda rows, refs, fast: (fast, _pool_ids(pool_ids, refs)))
        rel = queries.rel_ids
        self.suite.notes["relevant_not_in_corpus"] = int(sum(str(x) not in present for x in rel[rel != ""]))
        self.score_seconds += time.perf_counter() - start

    def _index_docs(self, langs: tuple[str, ...]) -> tuple[list[str], list[str], list[dict]]:
        limit = _index_limit()
        ns_ids, doc_langs, docs = [], [], []
        for lang in langs:
            before = len(docs)
            for doc_id, item in self.suite.corpora[lang]:
                if len(docs) >= limit:
                    raise XlirError(
                        f"{self.model.name} holds its index in memory and {'+'.join(langs)} has more than {limit:,} "
                        f"passages; choose smaller languages (--suite miracl:sw,yo) or raise {INDEX_LIMIT_ENV} "
                        "if this machine has the memory"
                    )
                ns_ids.append(f"{self.suite.prefix(lang)}{doc_id}")
                doc_langs.append(lang)
                docs.append(item)
            self.passages[lang] = len(docs) - before
            if len(docs) == before:
                raise XlirError(f"the {self.suite.name} {lang} corpus is empty")
        return ns_ids, doc_langs, docs

    # -- 5. reduction ---------------------------------------------------------------------------------------
    def reduce(self) -> None:
        gathered = self.world.all_gather(self.states if not self.world.is_main else None)
        if self.world.is_main:
            for other in gathered[1:]:
                for mine, theirs in zip(self.states, other):
                    if mine is not None:
                        mine.merge(theirs)
        langs = self.world.all_gather(self._doc_lang if not self.world.is_main else None)
        if self.world.is_main:
            for part in langs[1:]:
                self._doc_lang += part
        for p in self.world.all_gather(self.passages):
            for lang, n in p.items():
                self.passages[lang] = max(self.passages.get(lang, 0), n)

    def state_of(self, i: int) -> StreamState:
        pool = self.pools[i]
        return self.states[i if pool.same_as is None else pool.same_as]

    def doc_languages(self, ids: np.ndarray) -> np.ndarray:
        """The language of each pool id among the resolved top-k entries ('' for padding)."""
        if not self._doc_lang:
            return np.full(ids.shape, "", dtype="<U16")
        known = np.concatenate([a for a, _ in self._doc_lang])
        langs = np.concatenate([b for _, b in self._doc_lang])
        known, first = np.unique(known, return_index=True)
        langs = langs[first]
        at = np.clip(np.searchsorted(known, ids), 0, len(known) - 1)
        return np.where(known[at] == ids, langs[at], "")


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            return True
    except OSError:
        return False


def _digest(ids: list[str], texts: list[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for a, b in zip(ids, texts):
        h.update(a.encode() + b"\0" + b.encode() + b"\0")
    return h.hexdigest()


def _index_limit() -> int:
    raw = os.environ.get(INDEX_LIMIT_ENV, str(DEFAULT_INDEX_LIMIT))
    try:
        value = int(raw)
    except ValueError:
        raise XlirError(f"{INDEX_LIMIT_ENV}={raw!r} is not a whole number of passages; unset it or give e.g. "
                        f"{DEFAULT_INDEX_LIMIT}") from None  # fmt: skip
    if value < 1:
        raise XlirError(f"{INDEX_LIMIT_ENV}={raw!r} must be at least 1")
    return value


def _checked_norm(store: ShardStore, i: int, vectors: np.ndarray, cosine: bool) -> float:
    """The largest norm of ``vectors`` (a shard, or some of its rows), checked: it sets the error band, so the
    manifest's bound is verified rather than trusted, and a cosine model's vectors must have unit length (or be all
    zeros). Scaled vectors under a rewritten manifest fail here, not in the numbers."""
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))  # no float64 copy of the shard
    where = f"embedding shard {i} in {store.folder}"
    if not np.isfinite(norms).all():
        raise XlirError(f"{where} holds non-finite values")
    actual = float(norms.max()) if len(norms) else 0.0
    if store.max_norm(i) < actual:
        raise XlirError(f"{where} records a norm bound below its vectors'")
    if cosine and np.any((np.abs(norms - 1.0) > 1e-5) & (norms > 0)):
        raise XlirError(f"{where} holds vectors that are not of unit length, though the model is a cosine one")
    return float(np.nextafter(actual, np.inf))


def _canonical_pairs(q: np.ndarray, rows: np.ndarray, vecs: np.ndarray, row_pos: np.ndarray, cols: np.ndarray):
    return canonical_pairs(q, rows[row_pos], vecs, cols)


def _members(ids: np.ndarray, sorted_wanted: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` found in ``sorted_wanted`` (a binary search per id; ``np.isin`` sorts every time)."""
    if not len(sorted_wanted):
        return np.empty(0, dtype=np.int64)
    at = np.searchsorted(sorted_wanted, ids)
    at[at == len(sorted_wanted)] = 0
    return np.flatnonzero(sorted_wanted[at] == ids)


def _relevant_from_matrix(rel_ids: np.ndarray, scores: np.ndarray, column: dict[str, int]) -> np.ndarray:
    out = np.full(rel_ids.shape, np.nan)
    for r in range(rel_ids.shape[0]):
        for s in range(rel_ids.shape[1]):
            c = column.get(str(rel_ids[r, s]))
            if c is not None:
                out[r, s] = scores[r, c]
    return out


class _Prefixed:
    """A shard's ids seen as pool ids (``<lang>:<id>`` or as they are), built only for the positions asked for."""

    def __init__(self, prefix: str, ids: np.ndarray) -> None:
        self.prefix, self.ids = prefix, ids

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        return np.char.add(self.prefix, self.ids[positions]) if self.prefix else self.ids[positions]


def _by_source(refs: np.ndarray):
    """Decode top-k references (``source << 32 | column``): yield (source, positions in refs, columns)."""
    src, col = refs >> 32, refs & 0xFFFFFFFF
    for s in np.unique(src):
        at = np.flatnonzero(src == s)
        yield int(s), at, col[at]


def _pool_ids(pool_ids: list[np.ndarray], refs: np.ndarray) -> np.ndarray:
    out = np.empty(len(refs), dtype=object)
    for s, at, col in _by_source(refs):
        out[at] = pool_ids[s][col]
    return out.astype(str)
