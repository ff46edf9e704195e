"""On-disk embedding cache: a re-run encodes nothing it has encoded before, and never reuses stale vectors.

Vectors are keyed by the model's identity (see :func:`xlir_bench.runner.model_identity`: entry point, distribution
version, a hash of the plugin's source, torch/transformers versions, plugin metadata including its revision, user
options), by kind (queries or corpus) and by everything the plugin sees of a text (language, text, title,
context). Any change to one of these is a different key, so changed code, options or weights never meet old
vectors. A plugin whose metadata has no ``revision`` is not cached: its weights cannot be told apart.

Layout: ``<cache>/embeddings/<identity digest>/identity.json`` plus shards ``<kind>-<id>.vecs.npy`` (float32),
``<kind>-<id>.keys.npy`` (16-byte blake2b digests, uint8) and ``<kind>-<id>.json``, the manifest with the
sha256 of both files, written last. Every shard is verified when read (checksums, shapes, finite values): a
corrupt, truncated or foreign shard is deleted with a warning and its texts are encoded again. A cache that cannot
be written (disk full, read-only, ``XLIR_BENCH_CACHE`` naming a file) is switched off with a warning: the run goes
on without it. Concurrent runs of one model take turns per chunk (an advisory lock), so the second one reads what
the first encoded instead of encoding and storing it again. Plain ``.npy``: nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fileio import MANIFEST_LIMIT, load_npy, npy_bytes, read_bytes, read_json, sha256, write_bytes
from .suites.download import cache_dir

KINDS = ("queries", "corpus")
STALE_TMP_SECONDS = 3600  # a temporary file this old belongs to no live writer


def embeddings_root(root: Path | None = None) -> Path:
    return (root or cache_dir()) / "embeddings"


def text_key(language: str, item: str | dict) -> bytes:
    if isinstance(item, str):
        fields = [item, "", ""]
    else:
        fields = [item.get("text", ""), item.get("title", ""), item.get("context", "")]
    return hashlib.blake2b(json.dumps([language, *fields], ensure_ascii=False).encode(), digest_size=16).digest()


def identity_digest(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _shard_files(manifest_path: Path) -> tuple[Path, Path]:
    stem = manifest_path.name[: -len(".json")]
    return manifest_path.with_name(f"{stem}.vecs.npy"), manifest_path.with_name(f"{stem}.keys.npy")


def _manifests(folder: Path, kind: str = "*") -> list[Path]:
    return sorted(p for p in folder.glob(f"{kind}-*.json") if not p.name.startswith("."))


def _read_shard(manifest_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(keys, vectors) of one shard, verified; ``ValueError``/``OSError`` naming the problem otherwise."""
    manifest = read_json(manifest_path, MANIFEST_LIMIT)
    if not isinstance(manifest, dict):
        raise ValueError("manifest is not an object")
    vecs_path, keys_path = _shard_files(manifest_path)
    try:
        vec_bytes = read_bytes(vecs_path, int(manifest["vecs_bytes"]))
        key_bytes = read_bytes(keys_path, int(manifest["keys_bytes"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"manifest lacks {exc}") from None
    if sha256(vec_bytes) != manifest.get("vecs_sha256") or sha256(key_bytes) != manifest.get("keys_sha256"):
        raise ValueError("checksum mismatch (corrupt or modified)")
    vectors, keys = load_npy(vec_bytes), load_npy(key_bytes)
    count, dim = manifest.get("count"), manifest.get("dim")
    if vectors.dtype != np.float32 or vectors.shape != (count, dim) or keys.shape != (count, 16):
        raise ValueError(f"shapes {vectors.shape}/{keys.shape} differ from the manifest ({count}, {dim})")
    if not np.isfinite(vectors).all():
        raise ValueError("holds NaN or infinite values")
    return keys, vectors


def _remove(paths) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            path.unlink()


def _clean_stale_tmp(folder: Path) -> None:
    now = time.time()
    for path in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if now - path.lstat().st_mtime > STALE_TMP_SECONDS:
                path.unlink()


class EmbeddingCache:
    """Vectors of one model identity."""

    def __init__(self, identity: dict, root: Path | None = None) -> None:
        if not identity:
            raise ValueError("an embedding cache needs a model identity")
        self.identity = identity
        self.folder = embeddings_root(root) / identity_digest(identity)
        self.warnings: list[str] = []
        self.disabled = False
        self._index: dict[str, dict[bytes, tuple[np.ndarray, int]]] = {kind: {} for kind in KINDS}
        self._seen: set[str] = set()  # shard manifests already read (or rejected)
        self._dim: int | None = None

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def _disable(self, action: str, exc: OSError) -> None:
        self.disabled = True
        self._warn(
            f"embedding cache switched off for this run: cannot {action} in {self.folder} "
            f"({exc.strerror or exc}); vectors are encoded but not stored"
        )

    def _refresh(self) -> None:
        """Read shards written since the last look (by this run or a concurrent one), verifying each. All shards
        of an identity share one dimension: the one holding most vectors wins, shards of another are dropped."""
        if self.disabled or not self.folder.is_dir():
            return
        loaded = []
        for manifest_path in _manifests(self.folder):
            if manifest_path.name in self._seen:
                continue
            self._seen.add(manifest_path.name)
            try:
                loaded.append((manifest_path, *_read_shard(manifest_path)))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                self._discard(manifest_path, str(exc))
        if self._dim is None and loaded:
            votes = Counter()
            for _, _, vectors in loaded:
                votes[vectors.shape[1]] += len(vectors)
            self._dim = votes.most_common(1)[0][0]
        for manifest_path, keys, vectors in loaded:
            kind = manifest_path.name.partition("-")[0]
            if kind not in self._index:
                self._discard(manifest_path, f"unknown kind {kind!r}")
            elif vectors.shape[1] != self._dim:
                self._discard(manifest_path, f"dimension {vectors.shape[1]}, the other shards have {self._dim}")
            else:
                index = self._index[kind]
                for row, key in enumerate(keys):
                    index[key.tobytes()] = (vectors, row)

    def _discard(self, manifest_path: Path, why: str) -> None:
        self._warn(f"discarded cached shard {manifest_path.name} of {self.folder.name}: {why}")
        _remove([manifest_path, *_shard_files(manifest_path)])

    def lookup(self, kind: str, keys: list[bytes]) -> tuple[dict[int, np.ndarray], list[int]]:
        """(position -> cached vector, positions still to encode)."""
        self._refresh()
        index = self._index[kind]
        hits, missing = {}, []
        for pos, key in enumerate(keys):
            found = index.get(key)
            if found is None:
                missing.append(pos)
            else:
                hits[pos] = found[0][found[1]]
        return hits, missing

    def forget(self, reason: str) -> None:
        """Drop every cached vector of this identity (they disagree with what the plugin now returns)."""
        self._warn(f"cleared the cached vectors of {self.folder.name}: {reason}")
        shutil.rmtree(self.folder, ignore_errors=True)
        self._index = {kind: {} for kind in KINDS}
        self._seen.clear()
        self._dim = None

    @contextlib.contextmanager
    def exclusive(self):
        """Hold this identity's lock (POSIX advisory, released if the process dies) while looking up, encoding
        and storing one chunk, so two concurrent runs never encode and store the same texts twice."""
        try:
            import fcntl
        except ImportError:  # no advisory locks (Windows): concurrent runs may duplicate work, never corrupt it
            yield
            return
        if self.disabled:
            yield
            return
        try:  # beside the identity's folder, not in it: forget() may delete the folder while the lock is held
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = open(self.folder.with_name(f".{self.folder.name}.lock"), "a+b")  # noqa: SIM115 - held across the yield
        except OSError as exc:
            self._disable("create the cache folder", exc)
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            handle.close()

    def store(self, kind: str, keys: list[bytes], vectors: np.ndarray) -> None:
        """Store new vectors as one verified shard; any write failure switches the cache off with a warning."""
        if not keys or self.disabled:
            return
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16)
        stem = f"{kind}-{uuid.uuid4().hex[:12]}"
        vec_bytes, key_bytes = npy_bytes(vecs), npy_bytes(key_array)
        manifest = {
            "kind": kind, "count": len(keys), "dim": int(vecs.shape[1]),
            "vecs_bytes": len(vec_bytes), "keys_bytes": len(key_bytes),
            "vecs_sha256": sha256(vec_bytes), "keys_sha256": sha256(key_bytes),
        }  # fmt: skip
        written: list[Path] = []
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _clean_stale_tmp(self.folder)
            ident = self.folder / "identity.json"
            if not ident.exists():
                write_bytes(ident, json.dumps(self.identity, indent=1, sort_keys=True, default=str).encode())
            for suffix, data in ((".vecs.npy", vec_bytes), (".keys.npy", key_bytes)):
                written.append(self.folder / f"{stem}{suffix}")
                write_bytes(written[-1], data)
            written.append(self.folder / f"{stem}.json")  # last: the shard exists once its manifest does
            write_bytes(written[-1], json.dumps(manifest).encode())
        except OSError as exc:
            _remove(written)
            self._disable("write a shard", exc)
            return
        self._seen.add(f"{stem}.json")
        self._dim = self._dim or vecs.shape[1]
        index = self._index[kind]
        for row, key in enumerate(keys):
            index[key] = (vecs, row)


@dataclass
class CacheEntry:
    folder: Path
    model: str
    revision: str
    vectors: int
    bytes: int
    bad_shards: int = 0
    identity_ok: bool = True


def entries(root: Path | None = None) -> list[CacheEntry]:
    """One entry per model folder. Vectors are counted from shard manifests whose files have the recorded sizes
    (cheap; checksums are verified when vectors are used); other shards, and leftovers of interrupted writes,
    count as bad."""
    out = []
    base = embeddings_root(root)
    if not base.is_dir():
        return out
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        try:
            identity = read_json(folder / "identity.json", MANIFEST_LIMIT)
            ok = isinstance(identity, dict)
        except (OSError, ValueError, UnicodeDecodeError):
            identity, ok = {}, False
        identity = identity if ok else {}
        meta = identity.get("metadata", {}) if isinstance(identity.get("metadata"), dict) else {}
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        count = bad = 0
        for manifest_path in _manifests(folder):
            try:
                manifest = read_json(manifest_path, MANIFEST_LIMIT)
                vecs, keys = _shard_files(manifest_path)
                if vecs.stat().st_size != manifest["vecs_bytes"] or keys.stat().st_size != manifest["keys_bytes"]:
                    raise ValueError("size")
                count += int(manifest["count"])
            except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
                bad += 1
        bad += sum(1 for p in folder.glob("*.npy") if not (folder / _manifest_name(p)).exists())
        model = str(identity.get("model", "?")) if ok else "(no identity)"
        out.append(CacheEntry(folder, model, str(meta.get("revision", "?")), count, size, bad, ok))
    return out


def _manifest_name(npy: Path) -> str:
    return npy.name.rsplit(".", 2)[0] + ".json"


def clear(root: Path | None = None, model: str | None = None, broken: bool = False) -> int:
    """Delete cached embeddings: of one model name, of folders whose identity is unreadable (``broken``), or all;
    return how many model folders went."""
    removed = 0
    for entry in entries(root):
        if (model is None and not broken) or entry.model == model or (broken and not entry.identity_ok):
            shutil.rmtree(entry.folder, ignore_errors=True)
            _remove([entry.folder.with_name(f".{entry.folder.name}.lock")])
            removed += 1
    return removed
