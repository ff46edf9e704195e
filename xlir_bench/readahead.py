"""Reading an iterable on a background thread, a bounded number of items ahead of its consumer.

Why one helper: two layers overlap host work with device work the same way. The engine reads a MIRACL shard
(gzip, JSON, the passage item: about 25 us a passage on one core) while the device encodes the one before; the
encoder's feed (``models/feed.py``) tokenizes and collates the next window of texts while the device runs the
batches before them. Parsing holds the GIL, but the device's kernels and the tokenizer's Rust threads do not, so
one reader thread is enough (``benchmarks/read_overlap.py`` measures the engine's case with a device simulated by
GIL-free waits; on a GPU that encodes 20,000 passages/s, reading in turn would leave it idle a third of the time).

Items come in their order, so whatever the consumer cuts (shards, batches) is cut exactly as without the thread.
The reader hands over lists of ``chunk`` items (one queue operation per chunk, not per item) and stays at most
about ``limit`` items ahead, which bounds the extra memory. An exception of the reader is raised in the consumer
after the items read before it; closing the consumer (an error while encoding) stops the reader, and the thread
is joined before the consumer's ``finally`` ends, so none is left behind.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
CHUNK = 1024  # items per hand-over
_END = object()


def read_ahead(items: Iterable[T], limit: int, chunk: int = CHUNK, name: str = "xlir-bench-read-ahead") -> Iterator[T]:
    """``items`` in order, read by a daemon thread at most about ``limit`` items ahead (``limit`` <= 0: read here,
    in turn, as a plain loop would). ``name`` names the thread, for debuggers and tests."""
    if limit <= 0:
        yield from items
        return
    handed: queue.Queue = queue.Queue(maxsize=max(1, limit // chunk))
    stop = threading.Event()

    def put(thing) -> bool:
        while not stop.is_set():
            try:
                handed.put(thing, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        part: list = []
        try:
            for item in items:
                part.append(item)
                if len(part) >= chunk:
                    if not put(part):
                        return
                    part = []
            if put(part):
                put(_END)
        except BaseException as exc:  # noqa: BLE001 - raised in the consumer, after the items read before it
            if put(part):
                put(exc)

    thread = threading.Thread(target=reader, name=name, daemon=True)
    thread.start()
    try:
        while True:
            got = handed.get()
            if got is _END:
                return
            if isinstance(got, BaseException):
                raise got
            yield from got
    finally:
        stop.set()
        thread.join()
