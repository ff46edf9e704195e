"""InfoNCE with in-batch negatives (and optionally one hard negative per pair), on cosine similarities."""

from __future__ import annotations


def info_nce(queries, passages, hard_negatives=None, scale: float = 20.0):
    """Mean cross-entropy of each query against all passages of the batch (+ hard negatives), target = its own.

    ``scale`` is the inverse temperature (20 = temperature 0.05, sentence-transformers' default). Inputs are
    L2-normalised here, so scores are cosine similarities.
    """
    import torch
    import torch.nn.functional as F

    q = F.normalize(queries, dim=-1)
    candidates = passages if hard_negatives is None else torch.cat([passages, hard_negatives], dim=0)
    logits = scale * q @ F.normalize(candidates, dim=-1).T
    target = torch.arange(len(q), device=q.device)
    return F.cross_entropy(logits, target)
