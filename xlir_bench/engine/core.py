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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np

from ..distributed import World
from ..errors import XlirError
from ..fileio import is_writable
from ..metrics.stream import StreamState, canonical_pairs, error_bound
from ..plugins import LoadedModel, check_matrix
from ..shards import ShardStore, identity_folder, in_use
from .data import EvalSuite
from .pools import Pool, plan, pools_of
from .tiles import HostTile, Target, TileScorer, process
from .vectors import Vectors, check_doc_id, check_unique

DEFAULT_SHARD_SIZE = 100_000
BLOCK_ELEMENTS = 1 << 23  # retriever scores held at once (queries x pool)
BIAS_CUTOFFS = (10,)  # other_language@k; the top 1 comes with it
INDEX_LIMIT_ENV = "XLIR_BENCH_MAX_INDEX_PASSAGES"
DEFAULT_INDEX_LIMIT = 2_000_000
TIE_RULE = "canonical float32 scores; equal scores ordered by pool doc id descending (trec_eval)"
ENGINE = "engine-1"  # the tag results carry: which definition of scores and ties made them

Advance = Callable[[str, int], None]


class Engine(Vectors):
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
        self.encode_seconds = self.score_seconds = self.read_wait_seconds = self.index_seconds = 0.0
        self.passages: dict[str, int] = {}
        self.warnings: list[str] = []
        self.q: np.ndarray | None = None
        self._queries_cached = False
        self._cosine = model.similarity == "cosine"
        self._doc_lang: list[tuple[np.ndarray, np.ndarray]] = []  # (pool ids, languages) of resolved top-k entries

    def work_total(self) -> int | None:
        """What the progress bar counts to (None when a corpus size is unknown before reading it): a dense model
        advances once per query encoded and twice per passage (encoded, scored), a retriever once per (pool, query)."""
        if self.model.kind != "dense":
            return sum(len(p.rows) for p in self.pools if p.same_as is None)
        sizes = [c.size_hint() for c in self.suite.corpora.values()]
        return None if None in sizes else len(self.suite.queries) + 2 * sum(sizes)

    def k_of(self, pool: Pool) -> int:
        """Top-k kept per query: the saved run's depth, and in the multilingual pool enough for the bias cut-offs."""
        if pool.setting == "multilingual":
            return max(BIAS_CUTOFFS[-1], self.run_depth or 0)
        return self.run_depth or 0

    # -- the run --------------------------------------------------------------------------------------------
    def run(self) -> None:
        scratch = None
        root, identity = self.cache_root, self.identity
        if identity is not None and not is_writable(root):
            self.warnings.append(f"vector cache switched off: {root} is not a writable folder (set "
                                 "XLIR_BENCH_CACHE to one); vectors went to a temporary folder")  # fmt: skip
            identity = None
        if identity is None:  # no cache: shards in a private folder, removed at the end
            base = root if is_writable(root) else Path(tempfile.gettempdir()) / "xlir-bench"
            scratch = base / "scratch" / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            root, identity = scratch, {"model": self.model.label, "scratch": scratch.name}
        try:
            if self.model.kind == "dense":
                # shared, so parallel runs and ranks go on together; `cache clear` leaves a held folder alone
                with nullcontext() if scratch is not None else in_use(identity_folder(root, identity)):
                    self.encode_queries(root, identity)
                    stores = {lang: self.encode_corpus(lang, root, identity) for lang in self.suite.languages}
                    self.score_dense(stores, self.relevant_scores(stores))
            else:
                self.score_retriever()
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        self.reduce()

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
            # gathered chunk by chunk from the map: the survivors of a deep run are GBs of vectors at once
            exact[at] = canonical_pairs(self.q, qrows, store.mapped(shard, col), col)
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
        indexes: dict[tuple[str, ...], tuple] = {}  # one index per set of languages (monolingual X, cross-lingual X)
        for i, pool in enumerate(self.pools):
            if pool.same_as is not None:
                continue
            state = self.states[i] = self._new_state(i, np.full(queries.rel_ids.shape, np.nan))
            state.resolver = lambda rows, refs, fast: (fast, _pool_ids(pool_ids, refs))
            if pool.languages not in indexes:
                ns_ids, langs, docs = self._index_docs(pool.languages)
                present.update(ns_ids)
                self.advance(f"index {'+'.join(pool.languages)}", 0)
                built = time.perf_counter()
                index = self.model.call("build_index", docs)
                self.index_seconds += time.perf_counter() - built
                ns_array = np.array(ns_ids, dtype=str)
                self._doc_lang.append((ns_array, np.array(langs)))
                indexes[pool.languages] = (index, ns_ids, {d: c for c, d in enumerate(ns_ids)}, ns_array, len(pool_ids))
                pool_ids.append(ns_array)
            index, ns_ids, column, ns_array, source = indexes[pool.languages]
            step = max(1, BLOCK_ELEMENTS // max(1, len(ns_ids)))
            for lang in self.suite.languages:
                own = np.flatnonzero(queries.lang[pool.rows] == lang)  # the pool's rows asked in ``lang``
                for lo in range(0, len(own), step):
                    block = own[lo : lo + step]
                    texts = [queries.texts[r] for r in pool.rows[block]]
                    raw = self.model.call("score", texts, language=lang, target=index)
                    scores = check_matrix(raw, len(texts), self.model.name, f"score(language={lang!r})", len(ns_ids))
                    scores = np.asarray(scores, dtype=np.float32)  # trec_eval's precision; exact from here on
                    state.set_relevant(block, _relevant_from_matrix(state.rel_ids[block], scores, column))
                    tile = HostTile(scores, ids=ns_array)
                    process(state, block, tile, np.zeros(len(block)), ns_array, None, source, 0)
                    self.advance(f"score {lang} ({pool.setting} {pool.name})", len(block))
        for state in self.states:
            if state is not None:
                state.finalize(lambda rows, refs, fast: (fast, _pool_ids(pool_ids, refs)))
        rel = queries.rel_ids
        judged = rel[rel != ""]
        self.note_missing_relevant(int(sum(str(x) not in present for x in judged)), len(judged))
        self.score_seconds += time.perf_counter() - start - self.index_seconds
        self.encode_seconds += self.index_seconds  # a retriever's "encoding" is building its indexes

    def _index_docs(self, langs: tuple[str, ...]) -> tuple[list[str], list[str], list[dict]]:
        limit = _index_limit()
        ns_ids, doc_langs, docs = [], [], []
        for lang in langs:
            before = len(docs)
            for doc_id, item in self.suite.corpora[lang]:
                check_doc_id(doc_id, lang)
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
            check_unique(ns_ids[before:], lang)
            if len(docs) == before:
                raise XlirError(f"the {self.suite.name} {lang} corpus is empty")
        return ns_ids, doc_langs, docs

    # -- 5. reduction ---------------------------------------------------------------------------------------
    def reduce(self) -> None:
        for state in self.states:  # resolvers point back into this engine: never sent to another rank
            if state is not None:
                state.resolver = None
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


def _canonical_pairs(q: np.ndarray, rows: np.ndarray, vecs: np.ndarray, row_pos: np.ndarray, cols: np.ndarray):
    return canonical_pairs(q, rows[row_pos], vecs, cols)


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
