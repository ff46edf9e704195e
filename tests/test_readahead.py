"""The corpus read-ahead: the same items in the same order, errors where they happened, no thread left behind."""

from __future__ import annotations

import threading
import time

import pytest

from xlir_bench.readahead import read_ahead


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "xlir-bench-read-ahead" and t.is_alive()]


@pytest.mark.parametrize("n", [0, 1, 6, 7, 8, 38])
@pytest.mark.parametrize("limit", [0, 7, 100])
def test_every_item_comes_once_in_order(n, limit):
    assert list(read_ahead(iter(range(n)), limit, chunk=7)) == list(range(n))
    assert not readers()


def test_an_error_of_the_reader_comes_after_the_items_read_before_it():
    def source():
        yield from range(10)
        raise ValueError("corrupt line 11")

    got = []
    with pytest.raises(ValueError, match="corrupt line 11"):
        for item in read_ahead(source(), 8, chunk=4):
            got.append(item)
    assert got == list(range(10)) and not readers()


def test_the_reader_stays_within_its_limit_and_stops_when_the_consumer_does():
    read = []

    def source():
        for i in range(10_000):
            read.append(i)
            yield i

    stream = read_ahead(source(), 40, chunk=8)
    assert next(stream) == 0
    deadline, last = time.monotonic() + 5, -1
    while time.monotonic() < deadline and len(read) != last:  # until the reader blocks on the full queue
        last = len(read)
        time.sleep(0.2)
    assert 8 < len(read) <= 40 + 3 * 8  # ahead of the consumer, but not the whole source
    stream.close()
    assert not readers() and len(read) < 10_000
