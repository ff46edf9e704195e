"""Turn a model plugin into score blocks over a suite's pools, timing encoding and scoring separately.

A *pool* is a language code (that language's candidates) or ``"all"`` (the mixed multilingual pool). Dense
encoders encode every language's queries and candidates once; scoring indexes are built once per pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .cache import EmbeddingCache, text_key
from .errors import XlirError
from .plugins import LoadedModel, check_matrix
from .suites.records import SuiteData

ALL = "all"
ENCODE_CHUNK = 2048  # texts per plugin call: progress granularity, large enough for length-sorted batching

Advance = Callable[[str, int], None]  # (task label, items done)


def doc_dict(doc) -> dict:
    """What an encoder or index sees of a candidate."""
    return {
        "text": doc.text,
        "title": doc.title,
        "context": doc.context,
        "language": doc.language,
        "doc_id": doc.doc_id,
    }


class ScoreSource:
    """Scores of query blocks against pools for one (model, suite)."""

    def __init__(
        self, model: LoadedModel, suite: SuiteData, batch_size: int, cache: EmbeddingCache | None = None
    ) -> None:
        self.model, self.suite, self.batch_size, self.cache = model, suite, batch_size, cache
        self.cache_hits = 0
        self.encode_seconds = 0.0
        self.score_seconds = 0.0
        self._pools: dict[str, np.ndarray] = {ALL: np.arange(len(suite.docs))}
        for lang in suite.languages:
            self._pools[lang] = suite.doc_ids_in(lang)
        self._q: np.ndarray | None = None
        self._d: np.ndarray | None = None
        self._indexes: dict[str, object] = {}

    def pool(self, name: str) -> np.ndarray:
        return self._pools[name]

    def work_items(self) -> int:
        """How many texts :meth:`prepare` will handle (for a progress bar)."""
        return (
            len(self.suite.queries) + len(self.suite.docs) if self.model.kind == "dense" else len(self.suite.docs) * 2
        )

    def prepare(self, advance: Advance) -> None:
        start = time.perf_counter()
        if self.model.kind == "dense":
            self._encode_all(advance)
        else:
            for name in [*self.suite.languages, ALL]:
                advance(f"index {name}", 0)
                docs = [doc_dict(self.suite.docs[i]) for i in self._pools[name]]
                self._indexes[name] = self.model.call("build_index", docs)
                advance(f"index {name}", len(docs))
        self.encode_seconds += time.perf_counter() - start

    def _encode_all(self, advance: Advance) -> None:
        suite, dim = self.suite, None
        q_parts: dict[int, np.ndarray] = {}
        d_parts: dict[int, np.ndarray] = {}
        for lang in suite.languages:
            for kind, idx, texts_of, method, parts in (
                ("queries", suite.query_ids_in(lang), lambda i: suite.queries[i].text, "encode_queries", q_parts),
                ("corpus", suite.doc_ids_in(lang), lambda i: doc_dict(suite.docs[i]), "encode_corpus", d_parts),
            ):
                for lo in range(0, len(idx), ENCODE_CHUNK):
                    chunk = idx[lo : lo + ENCODE_CHUNK]
                    items = [texts_of(i) for i in chunk]
                    vectors, dim = self._encode_chunk(kind, method, lang, items, dim)
                    for row, i in enumerate(chunk):
                        parts[int(i)] = vectors[row]
                    advance(f"encode {kind} {lang}", len(items))
        self._q = self._stack(q_parts, len(suite.queries), dim)
        self._d = self._stack(d_parts, len(suite.docs), dim)

    def _encode_chunk(self, kind: str, method: str, lang: str, items: list, dim: int | None):
        """Vectors for ``items``: cached ones from disk, the rest from the plugin (then cached)."""
        keys = [text_key(lang, item) for item in items] if self.cache is not None else []
        hits, missing = self.cache.lookup(kind, keys) if self.cache is not None else ({}, list(range(len(items))))
        self.cache_hits += len(hits)
        rows: dict[int, np.ndarray] = dict(hits)
        if missing:
            todo = [items[i] for i in missing]
            out = self.model.call(method, todo, language=lang, batch_size=self.batch_size)
            out = check_matrix(out, len(todo), self.model.name, f"{method}(language={lang!r})", dim)
            if self.cache is not None:
                self.cache.store(kind, [keys[i] for i in missing], out)
            rows.update(zip(missing, out))
        dims = {len(v) for v in rows.values()}
        if len(dims) > 1 or (dim is not None and dims != {dim}):
            found = sorted(dims | ({dim} if dim else set()))
            raise XlirError(f"model plugin {self.model.name!r} returned vectors of different dimensions {found}")
        return [rows[i] for i in range(len(items))], dims.pop()

    def _stack(self, parts: dict[int, np.ndarray], n: int, dim: int | None) -> np.ndarray:
        matrix = np.zeros((n, dim or 1), dtype=np.float32)
        for i, row in parts.items():
            matrix[i] = row
        if self.model.similarity == "cosine":
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            matrix /= np.where(norms > 0, norms, 1.0)
        return matrix

    def scores(self, query_idx: np.ndarray, pool: str, language: str) -> np.ndarray:
        """(len(query_idx), len(pool)) scores; all queries of a block share ``language``."""
        start = time.perf_counter()
        if self.model.kind == "dense":
            assert self._q is not None and self._d is not None, "prepare() first"
            out = self._q[query_idx] @ self._d[self._pools[pool]].T
        else:
            texts = [self.suite.queries[i].text for i in query_idx]
            raw = self.model.call("score", texts, language=language, target=self._indexes[pool])
            out = check_matrix(
                raw, len(texts), self.model.name, f"score(language={language!r})", len(self._pools[pool])
            )
        self.score_seconds += time.perf_counter() - start
        return out
