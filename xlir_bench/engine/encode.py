"""Plugin calls that turn texts into checked float32 vectors ready for scoring."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import XlirError
from ..plugins import LoadedModel, check_matrix

ENCODE_CHUNK = 2048  # texts per plugin call: progress granularity, large enough for length-sorted batching
NORMALISE_ROWS = 8192  # vectors normalised at a time (float64 temporaries of 64 MB at d=1,024)


def encode(
    model: LoadedModel,
    batch_size: int,
    method: str,
    lang: str,
    items: list,
    dim: int | None,
    advance: Callable[[int], None] | None = None,
) -> np.ndarray:
    """One plugin call, checked (shape, finite values, the dimension of earlier calls); ``advance`` moves once per
    batch for plugins that report progress, else once at the end, and in total by exactly ``len(items)``. The
    plugin's own array comes back (any float dtype): converting a whole shard to float64 here would hold 800 MB
    at 100,000 x 1,024."""
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        step = max(0, min(int(n), len(items) - done))
        done += step
        if step and advance is not None:
            advance(step)

    out = model.call(method, items, language=lang, batch_size=batch_size, progress=tick)
    tick(len(items) - done)
    return check_matrix(out, len(items), model.name, f"{method}(language={lang!r})", dim)


def encode_all(model, batch_size, method, lang, items, dim, advance=None) -> tuple[np.ndarray, int]:
    """(float32 vectors ready for scoring, how many the plugin returned as all zeros) of ``items``: :func:`encode`
    in chunks of :data:`ENCODE_CHUNK` (progress moves between them), or in one call for a plugin whose metadata
    asks for ``whole_shards`` (it reports progress itself and keeps its device fed across what used to be the
    chunks, see :mod:`xlir_bench.models.feed`). Vectors are normalised :data:`NORMALISE_ROWS` at a time into one
    float32 array: normalising a 100,000 x 1,024 shard at once in float64 peaked at 2.9 GB, this at the shard's
    own 0.4 GB (``benchmarks/memory_budget.py``)."""
    out: np.ndarray | None = None
    zeros = 0
    chunk = max(1, len(items)) if model.metadata.get("whole_shards") else ENCODE_CHUNK
    for lo in range(0, len(items), chunk):
        part = encode(model, batch_size, method, lang, items[lo : lo + chunk], dim, advance)
        dim = part.shape[1]
        if out is None:
            out = np.empty((len(items), dim), dtype=np.float32)
        zeros += int((~np.any(part != 0, axis=1)).sum()) if part.size else 0
        for at in range(0, len(part), NORMALISE_ROWS):
            block = part[at : at + NORMALISE_ROWS]
            out[lo + at : lo + at + len(block)] = normalise(block, model)
    return (out if out is not None else np.zeros((0, dim or 1), dtype=np.float32)), zeros


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


NOTE_TEXTS = {
    "truncated": "{n} of {total} {what} were longer than the model's maximum input{limit} and were truncated",
    "out_of_memory_halved_budget": "the device ran out of memory while encoding {what}: the token budget per batch "
    "was halved for the rest of the run (batches hold fewer texts)",
}


def notes_warnings(notes: dict[str, int], total: int, what: str, model: LoadedModel) -> list[str]:
    """Lines for the result's warnings from an encoder's counts (summed over shards, stored or fresh)."""
    limit = model.metadata.get("max_length")
    limit = f" ({limit} tokens)" if isinstance(limit, int) else ""
    return [
        NOTE_TEXTS.get(key, "{what}: " + key + " {n}").format(n=f"{n:,}", total=f"{total:,}", what=what, limit=limit)
        for key, n in sorted(notes.items())
        if n
    ]


def zero_vector_warning(zero: int, total: int, what: str, model: LoadedModel) -> list[str]:
    """A note for the result when some vectors are all zeros: every score against them ties, so their ranks
    come from the tie rule alone, which is rarely what a model meant."""
    if not zero:
        return []
    return [f"model plugin {model.name!r} returned {zero} all-zero vector(s) of {total} {what}: their scores all tie"]
