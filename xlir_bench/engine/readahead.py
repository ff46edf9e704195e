"""Reading a corpus on a background thread, up to one shard ahead of the encoder.

Why: the engine reads a MIRACL shard (gzip, JSON, the passage item: about 25 us a passage on one core) and then
encodes it. On a GPU that encodes 20,000 passages/s (50 us each), reading in turn with encoding would leave the
device idle a third of the time. Read by a thread, the next shard is parsed while the device runs this one: the
parsing holds the GIL, but the device's kernels and the tokenizer's Rust threads do not need it
(``benchmarks/read_overlap.py`` measures the difference with a device simulated by GIL-free waits).

Items come in their order, so shards are cut exactly as before. The reader hands over lists of :data:`CHUNK` items
(one queue operation per chunk, not per passage) and stays at most ``limit`` items ahead, so memory holds at most
one extra shard of passages. An exception of the reader is raised in the consumer after the items read before it;
closing the consumer (an error while encoding) stops the reader.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
CHUNK = 1024  # items per hand-over
_END = object()


def read_ahead(items: Iterable[T], limit: int, chunk: int = CHUNK) -> Iterator[T]:
    """``items`` in order, read by a daemon thread at most about ``limit`` items ahead (``limit`` <= 0: read here,
    in turn, as a plain loop would)."""
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

    thread = threading.Thread(target=reader, name="xlir-bench-read-ahead", daemon=True)
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
