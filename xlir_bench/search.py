"""Exact top-k by inner product with faiss, for pools too large for a full score matrix (MIRACL, run export).

faiss (``faiss-gpu`` when installed with the ``gpu`` extra and a CUDA device is asked for, else ``faiss-cpu``)
returns the best ``k + margin`` candidates of each query by score. The result is then made exact under the
trec_eval tie rule (equal scores ordered by doc id, descending): when the last returned score is strictly below
the k-th, every document tied with the k-th is among the returned ones, so sorting them by (score, tiebreak)
gives the true top k; otherwise (a tie group wider than the margin) that query falls back to the full row.
Scores are faiss's float32 inner products; the exact full-pool metrics never depend on them.
"""

from __future__ import annotations

import numpy as np

from .errors import XlirError
from .metrics.ranks import top_k as exact_top_k

MARGIN = 64


def _faiss():
    try:
        import faiss
    except ImportError:
        raise XlirError(
            "top-k search needs faiss: pip install 'xlir-bench[neural]' (or [gpu] on CUDA machines)"
        ) from None
    return faiss


class InnerProductIndex:
    """An exact (flat) inner-product index over ``docs`` (n, d) float32, on GPU when asked and available."""

    def __init__(self, docs: np.ndarray, tiebreak: np.ndarray, device: str = "cpu") -> None:
        faiss = _faiss()
        self.docs = np.ascontiguousarray(docs, dtype=np.float32)
        self.tiebreak = tiebreak
        index = faiss.IndexFlatIP(self.docs.shape[1])
        self.on_gpu = False
        if device.startswith("cuda") and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            gpu = int(device.partition(":")[2] or 0)
            self._resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._resources, gpu, index)
            self.on_gpu = True
        index.add(self.docs)
        self.index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(doc indices, scores), each (n, k), in rank order under the trec_eval tie rule."""
        n_docs = self.docs.shape[0]
        k = min(k, n_docs)
        wide = min(n_docs, k + MARGIN)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores, ids = self.index.search(queries, wide)
        out_ids = np.empty((len(queries), k), dtype=np.int64)
        out_scores = np.empty((len(queries), k), dtype=np.float32)
        for row in range(len(queries)):
            s, i = scores[row], ids[row]
            if wide == n_docs or s[-1] < s[k - 1]:
                order = np.lexsort((self.tiebreak[i], -s))[:k]
                out_ids[row], out_scores[row] = i[order], s[order]
            else:  # the tie group at rank k runs past the margin: rank the whole row exactly
                full = self.docs @ queries[row]
                top = exact_top_k(full[None, :], k, self.tiebreak)[0]
                out_ids[row], out_scores[row] = top, full[top]
        return out_ids, out_scores
