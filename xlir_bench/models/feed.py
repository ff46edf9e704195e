"""The host side of dense encoding: texts -> token ids -> length-planned, padded batches, made on a background
thread while the device runs the batches before them.

Why a thread, and why windows. A GPU finishes a batch of e5-small in milliseconds; tokenizing the next texts on
the host takes longer than that unless it happens *while* the device works. The fast (Rust) tokenizers release the
GIL, and so does torch's forward, so one producer thread is enough to overlap the two; the producer stays one
window ahead (``prefetch``). Batches are planned by length within a window of :data:`WINDOW` texts, the unit the
engine used to hand a plugin per call: the same texts meet the same batch-mates as before, so vectors stay
bit-identical to the unpipelined encoder at every precision (``benchmarks/encode_throughput.py`` measures how
much padding a whole-shard plan would save instead: at MIRACL lengths it is small, see docs/benchmarks.md).

Collation is numpy (a padded int64 array and its mask, the same values as ``tokenizer.pad``), about 10x faster
than ``tokenizer.pad``, which builds its tensors from Python lists row by row; on CUDA the arrays are pinned so
that the copy to the device is asynchronous.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..readahead import read_ahead

WINDOW = 2048  # texts planned together: the engine's former per-call chunk, so batch-mates (and vectors) are unchanged
PREFETCH = 2  # windows the producer may be ahead of the device


@dataclass
class Batch:
    """One device batch: ``rows`` are positions in the caller's list of texts."""

    rows: np.ndarray
    input_ids: np.ndarray  # (len(rows), longest) int64, padded with the tokenizer's pad id
    attention_mask: np.ndarray  # (len(rows), longest) int64, 1 for real tokens


def plan(lengths: list[int], budget: int) -> list[np.ndarray]:
    """Indices sorted by length (longest first), cut so that rows x longest row <= ``budget`` padded tokens
    (a text longer than the budget travels alone)."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    out, start = [], 0
    while start < len(order):
        longest = lengths[order[start]]
        rows = max(1, budget // max(1, longest))
        out.append(order[start : start + rows])
        start += rows
    return out


def collate(ids: list[list[int]], rows: np.ndarray, pad_id: int, side: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) of ``rows`` padded to the longest: what ``tokenizer.pad(..., "np")`` returns."""
    longest = max((len(ids[i]) for i in rows), default=0)
    tokens = np.full((len(rows), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for r, i in enumerate(rows):
        n = len(ids[i])
        cut = slice(longest - n, longest) if side == "left" else slice(0, n)
        tokens[r, cut] = ids[i]
        mask[r, cut] = 1
    return tokens, mask


def rust_core(tokenizer):
    """A fast tokenizer's Rust core (None for a slow tokenizer), to be called directly by :func:`tokenize`.

    Why: transformers' call wraps the Rust batch encode in per-text Python work (a dict per encoding, a length
    check per text) that runs on one core while the encode itself uses all of them; on a many-core GPU host that
    serial part, not the tokenizer, would cap the feed. The core itself, not a copy: copying e5-small's takes over
    a second, and :func:`configure` leaves it as the tokenizer call leaves it."""
    core = getattr(tokenizer, "backend_tokenizer", None)
    return core if core is not None and hasattr(core, "encode_batch") else None


def configure(core, tokenizer, max_length: int) -> None:
    """Set ``core`` as ``tokenizer(texts, truncation=True, max_length=...)`` sets it before encoding (truncate at
    ``max_length``, longest first, on the tokenizer's side; no padding; special-token splitting as configured),
    touching only what differs, as that call does."""
    side = getattr(tokenizer, "truncation_side", "right")
    target = {"max_length": int(max_length), "stride": 0, "strategy": "longest_first", "direction": side}
    current = core.truncation
    if current is None or {k: current.get(k) for k in target} != target:
        core.enable_truncation(**target)
    if core.padding is not None:
        core.no_padding()
    split = bool(getattr(tokenizer, "split_special_tokens", False))
    if core.encode_special_tokens != split:
        core.encode_special_tokens = split


def tokenize(tokenizer, texts: list[str], max_length: int, core=None) -> tuple[list[list[int]], int]:
    """(token ids with special tokens, number of texts cut at ``max_length``). With ``core`` (:func:`rust_core`)
    the Rust encoder is called directly, same ids. A fast tokenizer says exactly which texts overflowed; for a slow
    one, a text that fills ``max_length`` is counted (it may have fit exactly)."""
    if core is not None:
        configure(core, tokenizer, max_length)
        return unpack(core.encode_batch(texts, add_special_tokens=True), max_length)
    encoded = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True,
                        return_attention_mask=False, return_token_type_ids=False)  # fmt: skip
    ids = encoded["input_ids"]
    try:
        cut = sum(1 for e in encoded.encodings if e.overflowing)
    except (AttributeError, TypeError, ValueError):  # a slow tokenizer has no encodings
        cut = sum(1 for x in ids if len(x) >= max_length)
    return ids, cut


def unpack(encodings, max_length: int) -> tuple[list[list[int]], int]:
    """(token ids, number cut at ``max_length``) of Rust encodings: the per-text Python work of the direct path."""
    ids = [e.ids for e in encodings]
    return ids, sum(1 for e, x in zip(encodings, ids) if len(x) >= max_length and e.overflowing)


class Feed:
    """Batches of ``texts`` in the order the device should run them, prepared ``prefetch`` windows ahead.

    ``budget()`` is read once per window, so a budget lowered while running (after an out-of-memory error) applies
    from the next window on. ``truncated`` counts texts cut at ``max_length``. Iterate it once; closing early
    (an exception in the consumer) stops the producer."""

    def __init__(self, tokenizer, texts: list[str], *, max_length: int, budget: Callable[[], int],
                 pin: bool = False, window: int | None = None, prefetch: int = PREFETCH) -> None:  # fmt: skip
        self.tokenizer, self.texts, self.max_length = tokenizer, texts, int(max_length)
        self.budget, self.pin, self.window = budget, pin, int(window or WINDOW)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.side = getattr(tokenizer, "padding_side", "right")
        self.truncated = 0
        self.core = rust_core(tokenizer)
        self.prefetch = max(1, int(prefetch))

    def windows(self) -> Iterator[list[Batch]]:
        """The batches of each window, made on the calling thread (the producer's work, also usable alone)."""
        for lo in range(0, len(self.texts), self.window):
            ids, cut = tokenize(self.tokenizer, self.texts[lo : lo + self.window], self.max_length, self.core)
            self.truncated += cut
            batches = []
            for rows in plan([len(x) for x in ids], self.budget()):
                tokens, mask = collate(ids, rows, self.pad_id, self.side)
                batches.append(Batch(rows + lo, *self._pinned(tokens, mask)))
            yield batches

    def _pinned(self, *arrays: np.ndarray):
        if not self.pin:
            return arrays
        import torch

        return tuple(torch.from_numpy(a).pin_memory() for a in arrays)

    def __iter__(self) -> Iterator[Batch]:
        for batches in read_ahead(self.windows(), self.prefetch, chunk=1, name="xlir-bench-feed"):
            yield from batches
