"""The engine's vectors: queries and corpora encoded into the store, verified, healed, and the relevant ones read.

A mixin of :class:`xlir_bench.engine.core.Engine` (steps 1-3 of its pass): everything here touches the vector
store (:mod:`xlir_bench.shards`) or the plugin's encoders, nothing scores.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import zlib
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import XlirError
from ..metrics.stream import canonical_pairs
from ..readahead import read_ahead
from ..shards import ShardStore
from .encode import encode_all, notes_warnings, zero_vector_warning

READ_AHEAD_SHARDS = 1  # corpus shards read ahead of the encoder (0: read in turn with encoding)


class Vectors:
    """Steps 1-3 of the engine's pass (see :mod:`xlir_bench.engine.core`)."""

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
                self.warnings += notes_warnings(store.notes(0), len(rows), f"{lang} queries", self.model)
            else:
                tick = partial(self.advance, f"encode queries {lang}")
                vectors, zero = encode_all(self.model, self.batch_size, "encode_queries", lang, texts, None, tick)
                if len(rows):
                    self._check_dimension(dim, vectors.shape[1], store)
                self.warnings += zero_vector_warning(zero, len(rows), f"{lang} queries", self.model)
                notes = self.model.encoding_notes()
                self.warnings += notes_warnings(notes, len(rows), f"{lang} queries", self.model)
                parts[lang] = vectors
                if len(rows):
                    store.write(0, ids, parts[lang], notes)
                    store.mark_complete(1, len(rows))
            if len(rows):
                dim = parts[lang].shape[1]
        q = np.zeros((len(queries), dim or 1), dtype=np.float32)  # every part has ``dim`` (checked as read)
        for lang, vectors in parts.items():
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
            self._corpus_notes(store, done, lang)
            return store, done
        error, shard, ids, docs, total = None, 0, [], [], 0
        mine = self.owns(lang, 0) and not store.has(0)
        seen = IdHashes()
        try:  # read (and ids checked) on a thread, a shard ahead of the encoder: see readahead's docstring
            for doc_id, item in read_ahead(checked(corpus, lang, seen), self.shard_size * READ_AHEAD_SHARDS):
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
            seen.check(lambda: (doc_id for doc_id, _ in corpus), lang)
        except XlirError as exc:
            error = str(exc)
        self.world.agree(error, f"encoding the {lang} corpus")
        if total == 0:
            raise XlirError(f"the {self.suite.name} {lang} corpus is empty")
        n = -(-total // self.shard_size)
        if all(store.has(i) for i in range(n)):  # with a shared file system every rank sees every shard
            store.mark_complete(n, total)
        self.passages[lang] = total
        self._corpus_notes(store, n, lang)
        self.encode_seconds += time.perf_counter() - start
        return store, n

    def _corpus_notes(self, store: ShardStore, n: int, lang: str) -> None:
        """The encoder's counts over ``lang``'s shards as result warnings, the same whether encoded now or read."""
        if not self.world.is_main:
            return
        notes: dict[str, int] = {}
        for i in range(n):
            for key, count in store.notes(i).items():
                notes[key] = notes.get(key, 0) + count
        self.warnings += notes_warnings(notes, self.passages[lang], f"{lang} passages", self.model)

    def _write_shard(self, store: ShardStore, shard: int, ids: list[str], docs: list[dict], lang: str) -> None:
        with store.claim(shard):
            if store.has(shard, len(ids)):  # another run on this store finished it while this one waited
                self.advance(f"encode {lang} shard {shard} (done by another run)", len(ids))
                return
            self._encode_shard(store, shard, ids, docs, lang)

    def _encode_shard(self, store: ShardStore, shard: int, ids: list[str], docs: list[dict], lang: str) -> None:
        check_unique(ids, lang)
        vectors, zero = encode_all(self.model, self.batch_size, "encode_corpus", lang, docs, None,
                                   partial(self.advance, f"encode {lang} shard {shard}"))  # fmt: skip
        self._check_dimension(self.q.shape[1] if self.q is not None else None, vectors.shape[1], store)
        self.warnings += zero_vector_warning(zero, len(docs), f"{lang} candidates in shard {shard}", self.model)
        store.write(shard, ids, vectors, self.model.encoding_notes())

    def note_missing_relevant(self, missing: int, judged: int) -> None:
        """Relevant passages absent from the corpus count as never retrieved (trec_eval's rule): recorded in the
        suite's notes and said as a warning, since a table of zeros from a partial corpus looks like a bad model."""
        self.suite.notes["relevant_not_in_corpus"] = missing
        if missing:
            self.warnings.append(
                f"{missing:,} of {judged:,} relevant passages are not in the corpus: they count as never retrieved "
                "(a partial or different corpus?)"
            )

    def _check_dimension(self, expected: int | None, dim: int, store: ShardStore) -> None:
        """Fresh vectors must have the dimension of those before them (``expected``; None: the first). When those
        came from the store, the plugin changed its dimension without a new revision: every vector of this identity
        is stale, so it is removed (one line, and the next run encodes afresh) instead of blaming the plugin on
        every later run."""
        if expected is None or dim == expected:
            return
        if self._queries_cached:
            shutil.rmtree(store.folder.parent, ignore_errors=True)
            raise XlirError(
                f"stored vectors of {self.model.label!r} have dimension {expected}, but the plugin "
                f"now returns {dim} under the same revision; they were removed: run the command again"
            )
        raise XlirError(f"model plugin {self.model.name!r} returned vectors of different dimensions "
                        f"[{expected}, {dim}]")  # fmt: skip

    # -- 3. relevant passages -------------------------------------------------------------------------------
    def relevant_scores(self, stores: dict[str, tuple[ShardStore, int]]) -> np.ndarray:
        """(Q, R) canonical scores of the relevant passages; NaN where a passage is not in the corpus."""
        queries = self.suite.queries
        rel = queries.rel_ids
        found: list[tuple[np.ndarray, np.ndarray]] = []  # (pool ids, their vectors) per shard read
        error = None
        try:
            for lang, (store, n) in stores.items():
                prefix = self.suite.prefix(lang)
                want = np.unique(np.char.replace(rel[queries.rel_lang == lang], prefix, "", count=1)) if prefix else (
                    np.unique(rel[queries.rel_lang == lang]))  # fmt: skip
                for i in range(n):
                    if self.owns(lang, i):
                        try:
                            found += self._relevant_in(store, i, want, prefix)
                        except XlirError as exc:  # a damaged shard: encoded again here, before any scoring
                            self._heal(lang, store, i, str(exc))
                            found += self._relevant_in(store, i, want, prefix)
        except XlirError as exc:
            error = str(exc)
        self.world.agree(error, "reading the shards")
        found = [part for parts in self.world.all_gather(found) for part in parts]
        scores = np.full(rel.shape, np.nan)
        rows, slots = np.nonzero(rel != "")
        if found:
            ids = np.concatenate([a for a, _ in found])
            table = np.concatenate([v for _, v in found]).astype(np.float32, copy=False)
            order = np.argsort(ids, kind="stable")
            ids, table = ids[order], table[order]
            wanted = rel[rows, slots]
            at = np.clip(np.searchsorted(ids, wanted), 0, len(ids) - 1)
            present = ids[at] == wanted
        else:
            table, at, present = np.zeros((0, self.q.shape[1]), np.float32), np.zeros(len(rows), int), rows < 0
        self.note_missing_relevant(int((~present).sum()), len(present))
        if present.any():
            scores[rows[present], slots[present]] = canonical_pairs(self.q, rows[present], table, at[present])
        return scores

    def _relevant_in(self, store: ShardStore, i: int, want: np.ndarray, prefix: str) -> list:
        """[(pool ids, vectors)] of the wanted passages in shard ``i`` (the chunks holding them verified)."""
        ids = store.read_ids(i)  # verified
        hit = _members(ids, want)
        if not len(hit):
            return []
        vecs = store.rows(i, hit, self.q.shape[1])
        _checked_norm(store, i, vecs, self._cosine)
        return [(np.char.add(prefix, ids[hit]) if prefix else ids[hit], vecs)]

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


def _digest(ids: list[str], texts: list[str]) -> str:
    h = hashlib.sha256()
    for a, b in zip(ids, texts):
        h.update(a.encode() + b"\0" + b.encode() + b"\0")
    return h.hexdigest()


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


def _members(ids: np.ndarray, sorted_wanted: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` found in ``sorted_wanted`` (a binary search per id; ``np.isin`` sorts every time)."""
    if not len(sorted_wanted):
        return np.empty(0, dtype=np.int64)
    at = np.searchsorted(sorted_wanted, ids)
    at[at == len(sorted_wanted)] = 0
    return np.flatnonzero(sorted_wanted[at] == ids)


def checked(corpus, lang: str, seen: IdHashes):
    """The corpus's (doc_id, item) pairs, each id checked and remembered as it is read."""
    for doc_id, item in corpus:
        check_doc_id(doc_id, lang)
        seen.add(doc_id)
        yield doc_id, item


def check_doc_id(doc_id: str, lang: str) -> None:
    """A passage id must be one non-empty token: TREC run and qrels lines are split on whitespace, so an id with a
    space would shift every field after it (trec_eval and ir-measures would read another document)."""
    if not doc_id or len(doc_id.split()) != 1 or doc_id != doc_id.strip():
        raise XlirError(f"passage id {doc_id!r} in the {lang} corpus is empty or contains whitespace, which TREC run "
                        "and qrels files cannot hold; fix the corpus ids")  # fmt: skip


class IdHashes:
    """The ids of a streamed corpus as 64-bit hashes (8 bytes a passage: 260 MB for English MIRACL's 32.9M, where
    a set of the ids would take gigabytes), so duplicates in *different* shards are found too; :func:`check_unique`
    sees one shard at a time."""

    def __init__(self) -> None:
        from array import array

        self.hashes = array("q")

    def add(self, doc_id: str) -> None:
        self.hashes.append(hash(doc_id))  # salted per process, stable within it: all this needs

    def check(self, ids_again, lang: str) -> None:
        """Refuse a corpus whose ids repeat; only when two hashes collide are the ids read again, to name one."""
        values = np.sort(np.frombuffer(self.hashes, dtype=np.int64))
        if not len(values) or not (values[1:] == values[:-1]).any():
            return
        clash = set(values[1:][values[1:] == values[:-1]].tolist())
        seen: set[str] = set()
        for doc_id in ids_again():
            if hash(doc_id) in clash:
                if doc_id in seen:
                    check_unique([doc_id, doc_id], lang)
                seen.add(doc_id)


def check_unique(ids: list[str], lang: str) -> None:
    """Refuse duplicate passage ids (checked per shard: all of an in-memory suite's language, 100,000 MIRACL passages
    at a time). Two texts under one id make the qrels ambiguous and the run hold the same (query, doc) twice; a
    careful trec_eval user fixes the corpus rather than have one copy win silently."""
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(d for d in ids if d in seen or seen.add(d))
        raise XlirError(
            f"passage id {dup!r} occurs more than once in the {lang} corpus (with possibly different "
            "texts); remove the duplicates (or a decompressed copy left beside a .jsonl.gz) and run again"
        )
