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


def encode_items(
    model: LoadedModel,
    cache: EmbeddingCache | None,
    batch_size: int,
    kind: str,
    method: str,
    lang: str,
    items: list,
    dim: int | None,
) -> tuple[np.ndarray, int, int]:
    """(vectors, dimension, cache hits) for ``items``: cached ones from disk, the rest from the plugin (then cached)."""
    keys = [text_key(lang, item) for item in items] if cache is not None else []
    hits, missing = cache.lookup(kind, keys) if cache is not None else ({}, list(range(len(items))))
    rows: dict[int, np.ndarray] = dict(hits)
    if missing:
        todo = [items[i] for i in missing]
        out = model.call(method, todo, language=lang, batch_size=batch_size)
        out = check_matrix(out, len(todo), model.name, f"{method}(language={lang!r})", dim)
        if cache is not None:
            cache.store(kind, [keys[i] for i in missing], out)
        rows.update(zip(missing, out))
    dims = {len(v) for v in rows.values()}
    if len(dims) > 1 or (dim is not None and dims != {dim}):
        found = sorted(dims | ({dim} if dim else set()))
        raise XlirError(f"model plugin {model.name!r} returned vectors of different dimensions {found}")
    dim = dims.pop()
    matrix = np.empty((len(items), dim), dtype=np.float64)
    for i in range(len(items)):
        matrix[i] = rows[i]
    return matrix, dim, len(hits)


def normalise(matrix: np.ndarray, model: LoadedModel) -> np.ndarray:
    """float32 vectors ready for scoring: unit length for cosine models, computed in float64 after scaling each row
    by its largest magnitude, so vectors scaled by 1e20 or 1e-30 neither overflow nor underflow. A vector that
    cannot be represented in float32 (dot similarity beyond float32's range) is one clear error."""
    m = np.asarray(matrix, dtype=np.float64)
    if model.similarity == "cosine":
        scale = np.abs(m).max(axis=1, keepdims=True) if m.size else np.ones((len(m), 1))
        scaled = m / np.where(scale > 0, scale, 1.0)
        norms = np.linalg.norm(scaled, axis=1, keepdims=True)
        m = scaled / np.where(norms > 0, norms, 1.0)
    with np.errstate(over="ignore"):
        out = m.astype(np.float32)
    if not np.isfinite(out).all():
        raise XlirError(
            f"model plugin {model.name!r} returned vectors too large for float32 scores (|x| > 3.4e38); "
            "scale them down or declare similarity = 'cosine'"
        )
    return out


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
        vectors, dim, hits = encode_items(self.model, self.cache, self.batch_size, kind, method, lang, items, dim)
        self.cache_hits += hits
        return vectors, dim

    def _stack(self, parts: dict[int, np.ndarray], n: int, dim: int | None) -> np.ndarray:
        matrix = np.zeros((n, dim or 1), dtype=np.float64)
        for i, row in parts.items():
            matrix[i] = row
        return normalise(matrix, self.model)

    def scores(self, query_idx: np.ndarray, pool: str, language: str) -> np.ndarray:
        """(len(query_idx), len(pool)) scores; all queries of a block share ``language``."""
        start = time.perf_counter()
        if self.model.kind == "dense":
            assert self._q is not None and self._d is not None, "prepare() first"
            out = self._q[query_idx] @ self._d[self._pools[pool]].T
            if not np.isfinite(out).all():
                raise XlirError(
                    f"model plugin {self.model.name!r}: dot-product scores overflow float32; scale the vectors down"
                )
        else:
            texts = [self.suite.queries[i].text for i in query_idx]
            raw = self.model.call("score", texts, language=language, target=self._indexes[pool])
            out = check_matrix(
                raw, len(texts), self.model.name, f"score(language={language!r})", len(self._pools[pool])
            )
        self.score_seconds += time.perf_counter() - start
        return out
