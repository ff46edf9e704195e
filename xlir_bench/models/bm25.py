"""BM25 lexical baseline (bm25s), implementing the harness's scoring protocol rather than encode_*.

Each candidate is indexed by its sentence text (not title or paragraph), tokenized for its own language; the
multilingual setting gets one index over the mixed pool, so IDF is computed over all languages together.
Queries are tokenized for their own language, so cross-lingual matches come only from shared surface tokens
(names, numbers): this is the lexical floor that neural models must beat.
"""

from __future__ import annotations

import bm25s
import numpy as np

from .tokenize import tokenize


class BM25Index:
    def __init__(self, docs: list[dict], k1: float, b: float, method: str) -> None:
        self.n_docs = len(docs)
        self._bm25 = bm25s.BM25(k1=k1, b=b, method=method)
        # A candidate with no tokens gets a placeholder no query can produce, so it scores 0.
        corpus = [tokenize(d["text"], d["language"]) or ["\x00"] for d in docs]
        self._bm25.index(corpus, show_progress=False)

    def score(self, queries: list[str], *, language: str) -> np.ndarray:
        out = np.zeros((len(queries), self.n_docs), dtype=np.float32)
        for row, text in enumerate(queries):
            tokens = [t for t in tokenize(text, language) if t in self._bm25.vocab_dict]
            if tokens:
                out[row] = self._bm25.get_scores(tokens)
        return out


class BM25:
    """``--model bm25``; options ``k1`` (default 0.9), ``b`` (0.4) and ``method`` (``lucene``), Pyserini's defaults."""

    similarity = "score"
    model_args = ("k1", "b", "method")

    def __init__(self, k1: float = 0.9, b: float = 0.4, method: str = "lucene", **_: object) -> None:
        self.k1, self.b, self.method = float(k1), float(b), str(method)
        self.metadata = {
            "name": "bm25",
            "revision": f"bm25s-{bm25s.__version__}",
            "parameters": {"k1": self.k1, "b": self.b, "method": self.method},
            "license": "MIT (bm25s)",
        }

    def build_index(self, docs: list[dict]) -> BM25Index:
        return BM25Index(docs, self.k1, self.b, self.method)
