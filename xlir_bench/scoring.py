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
    advance: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, int, int]:
    """(vectors, dimension, cache hits) for ``items``: cached ones from disk, the rest from the plugin (then cached).

    Cached vectors pass the same checks as fresh ones. When they disagree in dimension with what the plugin returns
    now, the cache of this identity is stale (a plugin changed without changing its revision): it is cleared with a
    warning and everything is encoded afresh, instead of blaming the plugin on every later run."""
    if cache is None:
        fresh = _encode(model, batch_size, method, lang, items, dim, advance)
        return fresh, fresh.shape[1], 0
    with cache.exclusive():
        keys = [text_key(lang, item) for item in items]
        hits, missing = cache.lookup(kind, keys)
        if hits and advance is not None:
            advance(len(hits))
        rows: dict[int, np.ndarray] = dict(hits)
        if missing:
            fresh = _encode(model, batch_size, method, lang, [items[i] for i in missing], dim, advance)
            cached_dims = {len(v) for v in hits.values()}
            if cached_dims and cached_dims != {fresh.shape[1]}:
                cache.forget(f"they have dimension {sorted(cached_dims)}, {model.name!r} now returns {fresh.shape[1]}")
                stale = sorted(hits)
                again = _encode(model, batch_size, method, lang, [items[i] for i in stale], fresh.shape[1])
                missing, fresh, hits = missing + stale, np.concatenate([fresh, again]), {}
            cache.store(kind, [keys[i] for i in missing], fresh)
            rows.update(zip(missing, fresh))
        matrix = np.asarray([rows[i] for i in range(len(items))], dtype=np.float64)
        if matrix.ndim != 2 or (dim is not None and matrix.shape[1] != dim):
            found = sorted({len(v) for v in rows.values()} | ({dim} if dim else set()))
            raise XlirError(f"model plugin {model.name!r} returned vectors of different dimensions {found}")
        return matrix, matrix.shape[1], len(hits)


def _encode(
    model: LoadedModel, batch_size: int, method: str, lang: str, items: list, dim: int | None, advance=None
) -> np.ndarray:
    """One plugin call; ``advance`` moves once per batch for plugins that report progress, else once at the end,
    and in total by exactly ``len(items)`` either way."""
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        step = max(0, min(int(n), len(items) - done))
        done += step
        if step and advance is not None:
            advance(step)

    out = model.call(method, items, language=lang, batch_size=batch_size, progress=tick)
    tick(len(items) - done)
    return check_matrix(out, len(items), model.name, f"{method}(language={lang!r})", dim).astype(np.float64)


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


def zero_vector_warning(matrix: np.ndarray, what: str, model: LoadedModel) -> str | None:
    """A note for the result when some vectors are all zeros: every score against them ties, so their ranks
    come from the tie rule alone, which is rarely what a model meant."""
    zero = int((~np.any(matrix != 0, axis=1)).sum()) if matrix.size else 0
    if not zero:
        return None
    return (
        f"model plugin {model.name!r} returned {zero} all-zero vector(s) of {len(matrix)} {what}: their scores all tie"
    )


class ScoreSource:
    """Scores of query blocks against pools for one (model, suite)."""

    def __init__(
        self, model: LoadedModel, suite: SuiteData, batch_size: int, cache: EmbeddingCache | None = None
    ) -> None:
        self.model, self.suite, self.batch_size, self.cache = model, suite, batch_size, cache
        self.cache_hits = 0
        self.warnings: list[str] = []
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
                    vectors, dim = self._encode_chunk(
                        kind, method, lang, items, dim, lambda n, label=f"encode {kind} {lang}": advance(label, n)
                    )
                    for row, i in enumerate(chunk):
                        parts[int(i)] = vectors[row]
        self._q = self._stack(q_parts, len(suite.queries), dim, "queries")
        self._d = self._stack(d_parts, len(suite.docs), dim, "candidates")

    def _encode_chunk(self, kind: str, method: str, lang: str, items: list, dim: int | None, advance=None):
        vectors, dim, hits = encode_items(
            self.model, self.cache, self.batch_size, kind, method, lang, items, dim, advance
        )
        self.cache_hits += hits
        return vectors, dim

    def _stack(self, parts: dict[int, np.ndarray], n: int, dim: int | None, what: str) -> np.ndarray:
        matrix = np.zeros((n, dim or 1), dtype=np.float64)
        for i, row in parts.items():
            matrix[i] = row
        note = zero_vector_warning(matrix, what, self.model)
        if note:
            self.warnings.append(note)
        return normalise(matrix, self.model)

    @property
    def all_warnings(self) -> list[str]:
        return [*self.warnings, *(self.cache.warnings if self.cache is not None else [])]

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
