"""Hashed character n-gram encoder: an xlir-bench dense-encoder plugin in a few lines."""

from __future__ import annotations

import zlib

import numpy as np


class HashGramEncoder:
    similarity = "cosine"
    model_args = ("n", "buckets")  # the --model-arg options it takes: any other is refused, not silently ignored

    def __init__(self, n: int = 3, buckets: int = 1 << 10, **_: object) -> None:
        self.n, self.buckets = int(n), int(buckets)
        self.metadata = {"name": "hashgram", "revision": f"n{self.n}-b{self.buckets}", "dimension": self.buckets}

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.buckets), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f" {text.casefold()} "
            for i in range(max(1, len(padded) - self.n + 1)):
                out[row, zlib.crc32(padded[i : i + self.n].encode()) % self.buckets] += 1.0
        return out

    def encode_queries(self, texts: list[str], *, language: str, batch_size: int) -> np.ndarray:
        return self._embed(texts)

    def encode_corpus(self, docs: list[dict], *, language: str, batch_size: int) -> np.ndarray:
        return self._embed([d["text"] for d in docs])
