"""Reading files the harness did not necessarily write: regular files only, size-limited, strict JSON.

A results folder or cache can hold anything a user (or an accident) put there: a FIFO named ``x.json`` blocks a
plain ``open().read()`` forever, a symlink to ``/dev/zero`` eats all memory, and Python's ``json`` accepts
``NaN``/``Infinity``, which are not JSON and poison every number computed from them. Everything here refuses
those with an ``OSError``/``ValueError`` (callers already treat both as "unusable file") instead of hanging.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import stat
import tempfile
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import XlirError

MiB = 2**20
JSON_LIMIT = 256 * MiB  # far above any result file (a MIRACL result with per-query AP is a few MiB)
MANIFEST_LIMIT = MiB  # shard manifests and identity files are a few hundred bytes


class NotARegularFile(OSError):
    """The path is a FIFO, device, socket or directory, or larger than the caller's limit."""


def _open_regular(path: str | os.PathLike, limit: int) -> tuple[int, int]:
    """(open descriptor, size) of a regular file (symlinks followed) of at most ``limit`` bytes.

    Opened non-blocking, so a FIFO is seen (and refused) by ``fstat`` before any read can block on it.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(f"{path} is not a regular file")
        if info.st_size > limit:
            raise NotARegularFile(f"{path} is {info.st_size / MiB:.1f} MiB, above the {limit / MiB:.0f} MiB limit")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_bytes(path: str | os.PathLike, limit: int = JSON_LIMIT) -> bytearray:
    """The file's bytes, if it is a regular file (symlinks followed) of at most ``limit`` bytes."""
    fd, size = _open_regular(path, limit)
    try:
        # one buffer of the expected size plus a byte that detects growth: no chunk list, no join, no second copy
        buffer = bytearray(min(size, limit) + 1)
        view, got = memoryview(buffer), 0
        while got < len(buffer):
            n = os.readv(fd, [view[got:]])
            if not n:
                break
            got += n
        view.release()
        del buffer[got:]
        while len(buffer) <= limit:  # it grew while being read: read on, up to the limit
            chunk = os.read(fd, min(limit + 1 - len(buffer), 8 * MiB))
            if not chunk:
                break
            buffer += chunk
        if len(buffer) > limit:
            raise NotARegularFile(f"{path} grew above the {limit / MiB:.0f} MiB limit while being read")
        return buffer
    finally:
        os.close(fd)


def map_file(path: str | os.PathLike, limit: int) -> mmap.mmap | bytes:
    """The file's bytes as a private memory map, if it is a regular file of at most ``limit`` bytes.

    Why: a 150 MB shard read into a fresh ``bytearray`` costs ~5x its checksum (the allocation is zero-filled and
    page-faulted, then the page cache is copied into it); a map reads the page cache in place. The map is
    copy-on-write (``ACCESS_COPY``), so arrays viewing it are writable (torch wants that) and writing them never
    reaches the file. Files are replaced by rename, never rewritten in place, so a mapped file does not change.
    """
    fd, size = _open_regular(path, limit)
    try:
        return mmap.mmap(fd, size, access=mmap.ACCESS_COPY) if size else b""
    finally:
        os.close(fd)


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(text: str | bytes):
    """``json.loads`` that refuses NaN, Infinity and -Infinity (Python's json accepts them by default)."""
    return json.loads(text, parse_constant=_no_constants)


def read_json(path: str | os.PathLike, limit: int = JSON_LIMIT):
    """Strict JSON from a regular file of at most ``limit`` bytes (``OSError`` or ``ValueError`` otherwise)."""
    return loads_strict(read_bytes(path, limit).decode("utf-8"))


def is_regular(path: Path) -> bool:
    """True for a regular file (after symlinks); False for FIFOs, devices, folders and missing paths."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def is_writable(folder: Path) -> bool:
    """Whether ``folder`` can be made and a file written in it (a probe file, removed at once)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            return True
    except OSError:
        return False


def write_atomic(path: Path, data: bytes | str | Iterable[str], *, shared: bool = False) -> None:
    """The one atomic writer: ``data`` (bytes, a string or an iterable of text chunks) goes to a temporary sibling,
    is fsynced, and renamed over ``path``, so the previous file, if any, stays intact when anything fails first.
    ``shared`` files (results) get the umask's permissions instead of mkstemp's 0600. An ``OSError`` (disk full,
    quota, a folder in the way) becomes one line naming the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise XlirError(f"cannot write {path} ({exc.strerror or exc}); choose a writable folder") from None
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines([data] if isinstance(data, str) else data)
                handle.flush()
                os.fsync(handle.fileno())
        if shared:
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise XlirError(f"cannot write {path} ({exc.strerror or exc}); the previous file, if any, is unchanged; "
                            "free some space or choose another folder") from None  # fmt: skip
        raise


write_bytes = write_atomic  # the name the shard store and trainer use for binary files


def npy_bytes(array: np.ndarray) -> bytearray:
    """A plain ``.npy`` image (no pickle) of ``array``, the bytes ``np.save`` writes, built with one copy of the data:
    ``np.save`` into a BytesIO grows its buffer and ``getvalue`` copies it again (1.6 GB in flight for a 100,000 x
    1,024 float32 shard instead of 0.4 GB)."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    head = header.getvalue()
    image = bytearray(len(head) + array.nbytes)
    image[: len(head)] = head
    if array.nbytes:
        image[len(head) :] = memoryview(array.reshape(-1)).cast("B")
    return image


def load_npy(data: bytes | bytearray | mmap.mmap) -> np.ndarray:
    """The array of a ``.npy`` image, as a view of ``data`` (no copy; writable when ``data`` is).

    The header is parsed from a copy of its own bytes only: ``io.BytesIO(data)`` would copy the whole image (a
    150 MB shard costs tens of ms of memcpy each time it is scored)."""
    head = bytes(memoryview(data)[:12])
    width = 2 if head[6:7] == b"\x01" else 4  # the header length field: 2 bytes in version 1, 4 after
    stream = io.BytesIO(bytes(memoryview(data)[: 8 + width + int.from_bytes(head[8 : 8 + width], "little")]))
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        return np.load(io.BytesIO(data), allow_pickle=False)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(stream)
    if dtype.hasobject:
        raise ValueError("object arrays are not loaded (no pickles)")
    count = int(np.prod(shape, dtype=np.int64))
    array = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())
    return array.reshape(shape, order="F" if fortran else "C")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


CRC_CHUNK = 16 * MiB


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def crc32_chunks(data: bytes | bytearray | memoryview, threads: int | None = None) -> list[int]:
    """CRC-32 of each 16 MiB chunk of ``data``, the chunks checked in parallel threads.

    Why not sha256: every shard of a large corpus is verified each time it is scored, and on a GPU that check was
    the whole cost of the pass (one core hashes sha256 at about 1 GB/s, the GPU scores faster than that). CRC-32 is
    2-3x faster per core, ``zlib.crc32`` releases the GIL so chunks verify on all cores at once, and it guards
    against what can happen to a cache file (torn writes, flipped bits, a file swapped for another of the same
    size: a miss has probability 2**-32 per chunk); it is not meant to resist a forger, and nothing here needs that.
    """
    view = memoryview(data).cast("B")
    spans = [view[lo : lo + CRC_CHUNK] for lo in range(0, len(view), CRC_CHUNK)] or [view]
    threads = min(len(spans), threads or usable_cores())
    if threads <= 1:
        return [zlib.crc32(s) for s in spans]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(zlib.crc32, spans))


def replace_dir(new: Path, target: Path) -> None:
    """Replace the folder ``target`` by the complete folder ``new`` without a moment where neither exists on disk:
    the old one is renamed aside first and deleted last (a kill in between leaves it, or ``new``, to recover)."""
    import shutil

    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
