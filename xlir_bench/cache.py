"""On-disk embedding cache: a re-run encodes nothing it has encoded before, and never reuses stale vectors.

Vectors are keyed by the model's identity (entry point, distribution version, plugin metadata including its
revision, user options), by kind (queries or corpus) and by everything the plugin sees of a text (language,
text, title, context). Any change to one of these is a different key, so changed options or weights never meet
old vectors. A plugin whose metadata has no ``revision`` is not cached: its weights cannot be told apart.

Layout: ``<cache>/embeddings/<identity digest>/identity.json`` plus shards ``<kind>-<id>.vecs.npy`` (float32)
and ``<kind>-<id>.keys.npy`` (16-byte blake2b digests, uint8). Shards are written to temporary files and renamed,
vectors before keys, so readers only ever see complete shards. Plain ``.npy``: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .suites.download import cache_dir

KINDS = ("queries", "corpus")


def embeddings_root(root: Path | None = None) -> Path:
    return (root or cache_dir()) / "embeddings"


def text_key(language: str, item: str | dict) -> bytes:
    if isinstance(item, str):
        fields = [item, "", ""]
    else:
        fields = [item.get("text", ""), item.get("title", ""), item.get("context", "")]
    return hashlib.blake2b(json.dumps([language, *fields], ensure_ascii=False).encode(), digest_size=16).digest()


def _save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class EmbeddingCache:
    """Vectors of one model identity."""

    def __init__(self, identity: dict, root: Path | None = None) -> None:
        if not identity:
            raise ValueError("an embedding cache needs a model identity")
        blob = json.dumps(identity, sort_keys=True, default=str).encode()
        self.identity = identity
        self.folder = embeddings_root(root) / hashlib.sha256(blob).hexdigest()[:24]
        self._index: dict[str, dict[bytes, tuple[np.ndarray, int]]] = {}

    def _load(self, kind: str) -> dict[bytes, tuple[np.ndarray, int]]:
        if kind not in self._index:
            index: dict[bytes, tuple[np.ndarray, int]] = {}
            for keys_path in sorted(self.folder.glob(f"{kind}-*.keys.npy")):
                vecs_path = keys_path.with_name(keys_path.name.replace(".keys.npy", ".vecs.npy"))
                try:
                    keys = np.load(keys_path, allow_pickle=False)
                    vecs = np.load(vecs_path, allow_pickle=False, mmap_mode="r")
                except (OSError, ValueError):
                    continue  # an unreadable shard is a cache miss, never an error
                if keys.ndim != 2 or keys.shape[1] != 16 or len(keys) != len(vecs):
                    continue
                for row, key in enumerate(keys):
                    index[key.tobytes()] = (vecs, row)
            self._index[kind] = index
        return self._index[kind]

    def lookup(self, kind: str, keys: list[bytes]) -> tuple[dict[int, np.ndarray], list[int]]:
        """(position -> cached vector, positions still to encode)."""
        index = self._load(kind)
        hits, missing = {}, []
        for pos, key in enumerate(keys):
            found = index.get(key)
            if found is None:
                missing.append(pos)
            else:
                hits[pos] = np.asarray(found[0][found[1]], dtype=np.float32)
        return hits, missing

    def store(self, kind: str, keys: list[bytes], vectors: np.ndarray) -> None:
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        ident = self.folder / "identity.json"
        if not ident.exists():
            ident.write_text(json.dumps(self.identity, indent=1, sort_keys=True, default=str))
        stem = f"{kind}-{uuid.uuid4().hex[:12]}"
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16)
        _save_npy(self.folder / f"{stem}.vecs.npy", vecs)
        _save_npy(self.folder / f"{stem}.keys.npy", key_array)
        index = self._load(kind)
        for row, key in enumerate(keys):
            index[key] = (vecs, row)


@dataclass
class CacheEntry:
    folder: Path
    model: str
    revision: str
    vectors: int
    bytes: int


def entries(root: Path | None = None) -> list[CacheEntry]:
    out = []
    base = embeddings_root(root)
    if not base.is_dir():
        return out
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        try:
            identity = json.loads((folder / "identity.json").read_text())
        except (OSError, ValueError):
            identity = {}
        meta = identity.get("metadata", {}) if isinstance(identity, dict) else {}
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        count = 0
        for keys_path in folder.glob("*.keys.npy"):
            try:
                count += len(np.load(keys_path, allow_pickle=False, mmap_mode="r"))
            except (OSError, ValueError):
                continue
        out.append(CacheEntry(folder, str(identity.get("model", "?")), str(meta.get("revision", "?")), count, size))
    return out


def clear(root: Path | None = None, model: str | None = None) -> int:
    """Delete cached embeddings (of one model name, or all); return how many model folders went."""
    removed = 0
    for entry in entries(root):
        if model is None or entry.model == model:
            shutil.rmtree(entry.folder, ignore_errors=True)
            removed += 1
    return removed
