"""Corpus embeddings on disk in fixed-size shards, for corpora that do not fit in memory (MIRACL).

A corpus is cut in corpus order into shards of ``shard_size`` passages. Shard ``i`` is three files in
``<cache>/shards/<model identity>/<corpus key>/``:

* ``shard-<i>.vecs.npy``: the vectors (float32 or float16), plain ``.npy``, nothing unpickled;
* ``shard-<i>.ids.npy``: the passage ids (unicode array);
* ``shard-<i>.json``: the manifest: count, dimension, dtype, the model identity digest, and the size and checksums
  of both files (CRC-32 per 16 MiB chunk, :func:`xlir_bench.fileio.crc32_chunks` says why not sha256; shards
  written before carry sha256, still verified as such). It is written last, so a shard without a manifest was never
  finished and is encoded again.

Every read checks the manifest against the request (model, dimension, dtype) and the files against their sizes and
checksums, so a truncated, corrupt or foreign shard is never scored: it is deleted with one line telling to re-run,
which re-encodes only that shard. ``corpus.json`` records how many shards a complete corpus has, so a re-run of
the same model reads no passage text at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import XlirError
from .fileio import MANIFEST_LIMIT, crc32_chunks, load_npy, map_file, npy_bytes, read_bytes, read_json, write_bytes

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so `cache clear` cannot see a run in progress there
    fcntl = None  # type: ignore[assignment]

DTYPES = ("float32", "float16")
IN_USE = ".in-use"  # in a model identity's folder: the lock a run holds shared while it uses the folder


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _intact(data: bytes | bytearray, manifest: dict, part: str) -> bool:
    """Whether ``data`` has the checksum the manifest records for ``part`` ("vecs" or "ids")."""
    if f"{part}_crc32" in manifest:
        return crc32_chunks(data) == manifest[f"{part}_crc32"]
    return hashlib.sha256(data).hexdigest() == manifest.get(f"{part}_sha256")  # shards of earlier versions


def _max_norm(vectors: np.ndarray, dtype: str, rows: int = 8192) -> float:
    """The largest norm of the vectors as stored (``dtype``), in float64, a block of rows at a time (a float64 copy
    of a whole 100,000 x 1,024 shard is 0.8 GB)."""
    largest = 0.0
    for lo in range(0, len(vectors), rows):
        stored = np.asarray(vectors[lo : lo + rows], dtype=dtype).astype(np.float64)
        largest = max(largest, float(np.einsum("ij,ij->i", stored, stored).max()))
    return float(np.sqrt(largest))


def identity_folder(root: Path, identity: dict) -> Path:
    """The folder of one model identity's vectors (every corpus and query set it encoded)."""
    return root / "shards" / _digest(identity)


@contextmanager
def in_use(folder: Path) -> Iterator[None]:
    """Held by a run for its whole pass over one model identity's vectors: a shared lock on ``folder/.in-use``, which
    :func:`remove_unless_in_use` must take exclusively, so `cache clear` skips what a running run reads or writes.
    The OS drops the lock when the process ends, however it ends: there is no stale marker to clean up."""
    fd = _lock_shared(folder) if fcntl is not None else None
    try:
        yield
    finally:
        if fd is not None:
            _leave(folder, fd)


def _lock_shared(folder: Path) -> int | None:
    """An open descriptor of ``folder/.in-use`` holding a shared lock; None on a file system without flock (Lustre
    mounted without it), where the run goes on unguarded rather than failing."""
    path = folder / IN_USE
    while True:
        _make_folder(folder)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _unwritable(folder, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a `cache clear` removes this folder
        except OSError:
            os.close(fd)
            return None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the folder was removed while this waited: lock the new one


def _leave(folder: Path, fd: int) -> None:
    """Let go of :func:`in_use`; a folder this run left empty (it failed before storing anything) goes too, when no
    other run holds it, so `cache info` does not list a model with nothing stored."""
    try:
        if [p.name for p in folder.iterdir()] == [IN_USE]:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            (folder / IN_USE).unlink()
            folder.rmdir()
    except OSError:  # held by another run (BlockingIOError), or something arrived meanwhile: leave it
        pass
    finally:
        os.close(fd)


def held(folder: Path) -> bool:
    """Whether a run holds ``folder`` (:func:`in_use`) now; creates nothing."""
    if fcntl is None:
        return False
    try:
        fd = os.open(folder / IN_USE, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:  # no flock on this file system: nothing can be known
        return False
    finally:
        os.close(fd)


def remove_unless_in_use(folder: Path) -> bool:
    """Remove a model identity's folder unless a run holds it (then False). The exclusive lock is held while the
    files go, so a run starting meanwhile waits and then makes a fresh folder instead of writing into this one."""
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(folder / IN_USE, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError:  # an unwritable folder (no run can use it), or no flock here: as before there were locks
            pass
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        if fd is not None:
            os.close(fd)
    return True


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(folder, exc) from None


def _unwritable(folder: Path, exc: OSError) -> XlirError:
    return XlirError(f"cannot create {folder} ({exc.strerror or exc}); set XLIR_BENCH_CACHE to a writable folder or "
                     "pass --no-cache")  # fmt: skip


@dataclass
class Shard:
    index: int
    ids: np.ndarray  # (n,) unicode
    vectors: np.ndarray  # (n, d) float32 (float16 shards are widened on read: exact)


class ShardStore:
    """The shards of one (model identity, corpus) pair."""

    def __init__(self, root: Path, identity: dict, corpus_key: dict, dtype: str = "float32") -> None:
        if dtype not in DTYPES:
            raise XlirError(f"unknown shard dtype {dtype!r}; use {' or '.join(DTYPES)}")
        self.identity_digest = _digest(identity)
        self.folder = identity_folder(root, identity) / _digest({**corpus_key, "dtype": dtype})
        self.dtype = dtype
        self.corpus_key = corpus_key
        self._identity = identity

    # -- paths ----------------------------------------------------------------------------------------------
    def _paths(self, i: int) -> tuple[Path, Path, Path]:
        stem = self.folder / f"shard-{i:06d}"
        return stem.with_suffix(".vecs.npy"), stem.with_suffix(".ids.npy"), stem.with_suffix(".json")

    def _manifest(self, i: int) -> dict | None:
        path = self._paths(i)[2]
        try:
            manifest = read_json(path, MANIFEST_LIMIT) if path.exists() else None
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) and isinstance(manifest.get("count"), int) else None

    # -- corpus-level state ------------------------------------------------------------------------------------
    def complete_count(self) -> int | None:
        """Number of shards when the corpus was fully encoded before (and every manifest is there), else None."""
        try:
            info = read_json(self.folder / "corpus.json", MANIFEST_LIMIT)
        except (OSError, ValueError):
            return None
        n = info.get("shards") if isinstance(info, dict) else None
        if not isinstance(n, int) or any(self._manifest(i) is None for i in range(n)):
            return None
        return n

    def mark_complete(self, shards: int, passages: int) -> None:
        write_bytes(
            self.folder / "corpus.json",
            json.dumps({"shards": shards, "passages": passages, "corpus": self.corpus_key}, indent=1).encode(),
        )

    def has(self, i: int, count: int | None = None) -> bool:
        """A finished shard whose manifest matches this store (cheap: sizes only; reads verify checksums)."""
        manifest = self._manifest(i)
        if manifest is None or not self._matches(manifest) or (count is not None and manifest["count"] != count):
            return False
        vecs, ids, _ = self._paths(i)
        try:
            return vecs.stat().st_size == manifest["vecs_bytes"] and ids.stat().st_size == manifest["ids_bytes"]
        except OSError:
            return False

    def _matches(self, manifest: dict) -> bool:
        return manifest.get("model") == self.identity_digest and manifest.get("dtype") == self.dtype

    # -- write / read ---------------------------------------------------------------------------------------
    def claim(self, i: int):
        """A lock on shard ``i`` while it is encoded: a second run on the same store waits, then finds the shard
        finished (:meth:`has`) instead of encoding it again."""
        from filelock import FileLock

        _make_folder(self.folder)
        return FileLock(str(self.folder / f".shard-{i:06d}.lock"))

    def write(self, i: int, ids: list[str], vectors: np.ndarray, notes: dict[str, int] | None = None) -> None:
        """Write shard ``i`` atomically: vectors and ids first, the manifest last. ``notes`` are the encoder's
        counts for these texts (e.g. how many were truncated), kept so that a run served from the store reports
        them as the run that encoded them did."""
        self.folder.mkdir(parents=True, exist_ok=True)
        ident = self.folder.parent / "identity.json"
        if not ident.exists():
            write_bytes(ident, json.dumps(self._identity, indent=1, sort_keys=True, default=str).encode())
        vec_bytes = npy_bytes(np.ascontiguousarray(vectors, dtype=self.dtype))
        id_bytes = npy_bytes(np.asarray(ids, dtype=str))
        vecs_path, ids_path, manifest_path = self._paths(i)
        write_bytes(vecs_path, vec_bytes)
        write_bytes(ids_path, id_bytes)
        manifest = {
            "index": i,
            "count": len(ids),
            "dim": int(vectors.shape[1]),
            "dtype": self.dtype,
            "model": self.identity_digest,
            "vecs_bytes": len(vec_bytes),
            "ids_bytes": len(id_bytes),
            "vecs_crc32": crc32_chunks(vec_bytes),
            # largest vector norm (float64, rounded up): bounds the float32 matmul error when scoring this shard
            "max_norm": float(np.nextafter(_max_norm(vectors, self.dtype), np.inf)),
            "ids_crc32": crc32_chunks(id_bytes),
            "notes": dict(notes or {}),
        }
        write_bytes(manifest_path, json.dumps(manifest, indent=1).encode())

    def read(self, i: int, dim: int | None = None) -> Shard:
        """Shard ``i``, verified; a bad shard is removed and reported in one line (a re-run re-encodes it)."""
        vecs_path, ids_path, _ = self._paths(i)
        manifest = self._manifest(i)
        problem = self._header_problem(manifest, dim)
        if problem is None:
            try:
                vec_bytes = map_file(vecs_path, manifest["vecs_bytes"])
                id_bytes = read_bytes(ids_path, manifest["ids_bytes"])
            except (OSError, KeyError, TypeError) as exc:
                vec_bytes = id_bytes = b""
                problem = f"cannot be read ({exc})"
            if problem is None:
                if len(vec_bytes) != manifest["vecs_bytes"] or len(id_bytes) != manifest["ids_bytes"]:
                    problem = "is truncated"
                elif not (_intact(vec_bytes, manifest, "vecs") and _intact(id_bytes, manifest, "ids")):
                    problem = "fails its checksum (corrupt)"
        if problem is None:
            vectors, ids = load_npy(vec_bytes), load_npy(id_bytes)
            if vectors.shape != (manifest["count"], manifest["dim"]) or ids.shape != (manifest["count"],):
                problem = "does not match its manifest"
            else:
                return Shard(i, ids, vectors.astype(np.float32, copy=False))
        self.discard(i)
        raise XlirError(f"embedding shard {vecs_path} {problem}; it was removed: run the command again to re-encode it")

    def _header_problem(self, manifest: dict | None, dim: int | None) -> str | None:
        """What is wrong with a shard before its bytes are read: no manifest, another model or dtype, another
        dimension (None: nothing)."""
        if manifest is None:
            return "has no manifest (never finished)"
        if not self._matches(manifest):
            return "was written by a different model or dtype"
        if dim is not None and manifest.get("dim") != dim:
            return f"has dimension {manifest.get('dim')}, the model gives {dim}"
        return None

    def max_norm(self, i: int) -> float:
        manifest = self._manifest(i)
        return float(manifest["max_norm"])

    def notes(self, i: int) -> dict[str, int]:
        """The encoder's counts recorded with shard ``i`` ({} for shards written before notes were kept)."""
        notes = (self._manifest(i) or {}).get("notes")
        return {str(k): int(v) for k, v in notes.items() if isinstance(v, int)} if isinstance(notes, dict) else {}

    def count(self, i: int) -> int:
        manifest = self._manifest(i)
        return int(manifest["count"]) if manifest else 0

    def read_ids(self, i: int) -> np.ndarray:
        """Only the ids of shard ``i`` (verified): finding relevant passages reads no vectors."""
        _, ids_path, _ = self._paths(i)
        manifest = self._manifest(i)
        try:
            data = read_bytes(ids_path, manifest["ids_bytes"] if manifest else 0)
        except (OSError, KeyError) as exc:
            data, manifest = b"", manifest and {**manifest, "error": str(exc)}
        if manifest is None or not self._matches(manifest) or not _intact(data, manifest, "ids"):
            self.discard(i)
            raise XlirError(
                f"embedding shard ids {ids_path} are missing, foreign or corrupt; it was removed: "
                "run the command again to re-encode it"
            )
        return load_npy(data)

    def rows(self, i: int, positions: np.ndarray, dim: int | None = None) -> np.ndarray:
        """Some vectors of shard ``i`` (float32), verified as :meth:`mapped` verifies them."""
        return np.asarray(self.mapped(i, positions, dim)[positions], dtype=np.float32)

    def mapped(self, i: int, positions: np.ndarray, dim: int | None = None) -> np.ndarray:
        """Shard ``i``'s vectors as a memory map (its stored dtype), verified where ``positions`` are: the dimension,
        and the checksum of every 16 MiB chunk that holds one of those rows (not the whole shard: the relevant
        passages of a large corpus are spread thinly over it). Nothing is copied, so a caller can gather a few rows
        at a time (the top 1,000 of 500 queries are 2 GB of vectors at d=1,024). A bad shard is removed and
        reported in one line."""
        path = self._paths(i)[0]
        manifest = self._manifest(i)
        problem = self._header_problem(manifest, dim)
        if problem is None:
            try:
                data = map_file(path, manifest["vecs_bytes"])
                vectors = load_npy(data) if len(data) == manifest["vecs_bytes"] else None
                if vectors is None or vectors.shape != (manifest["count"], manifest["dim"]):
                    problem = "is truncated or does not match its manifest"
                elif not self._chunks_intact(data, vectors, positions, manifest):
                    problem = "fails its checksum (corrupt)"
                else:
                    return vectors
            except (OSError, ValueError, KeyError, TypeError) as exc:
                problem = f"cannot be read ({exc})"
        self.discard(i)
        raise XlirError(f"embedding shard {path} {problem}; it was removed: run the command again to re-encode it")

    @staticmethod
    def _chunks_intact(data, vectors: np.ndarray, positions: np.ndarray, manifest: dict) -> bool:
        if "vecs_crc32" not in manifest:  # shards of earlier versions: the whole file's sha256
            return _intact(data, manifest, "vecs")
        from .fileio import CRC_CHUNK

        start = len(data) - vectors.nbytes  # the header comes first, the rows follow in order
        row_bytes = vectors.itemsize * (vectors.shape[1] if vectors.ndim == 2 else 1)
        first = (start + np.asarray(positions, dtype=np.int64) * row_bytes) // CRC_CHUNK
        last = (start + (np.asarray(positions, dtype=np.int64) + 1) * row_bytes - 1) // CRC_CHUNK
        chunks = sorted(set(first.tolist()) | set(last.tolist()))
        view = memoryview(data).cast("B")
        recorded = manifest["vecs_crc32"]
        return all(zlib.crc32(view[c * CRC_CHUNK : (c + 1) * CRC_CHUNK]) == recorded[c] for c in chunks)

    def discard(self, i: int) -> None:
        for path in reversed(self._paths(i)):  # manifest first: the shard stops counting as finished at once
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        try:
            (self.folder / "corpus.json").unlink()
        except FileNotFoundError:
            pass
