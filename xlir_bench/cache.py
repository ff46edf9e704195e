"""What ``xlir-bench cache info`` and ``cache clear`` see: the vector store on disk, one folder per model identity.

Vectors live in ``<cache>/shards/<identity digest>/<corpus key>/`` (:mod:`xlir_bench.shards`), with
``identity.json`` naming the model beside the corpus folders. Folders of the embedding cache of earlier versions
(``<cache>/embeddings/``) are listed and cleared too, marked as such: nothing reads them any more.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .fileio import MANIFEST_LIMIT, read_json
from .shards import held, remove_unless_in_use
from .suites.download import cache_dir

STORE, LEGACY = "shards", "embeddings"
NOT_MANIFESTS = ("identity.json", "corpus.json")


def store_root(root: Path | None = None) -> Path:
    return (root or cache_dir()) / STORE


@dataclass
class CacheEntry:
    folder: Path
    model: str
    revision: str
    vectors: int
    bytes: int
    bad_shards: int
    identity_ok: bool
    legacy: bool = False
    in_use: bool = False  # a run holds it now (:func:`xlir_bench.shards.in_use`)


def _identity(folder: Path) -> tuple[dict, bool]:
    try:
        identity = read_json(folder / "identity.json", MANIFEST_LIMIT)
    except (OSError, ValueError, UnicodeDecodeError):
        return {}, False
    return (identity, True) if isinstance(identity, dict) else ({}, False)


def _count(folder: Path) -> tuple[int, int]:
    """(vectors in finished shards whose files have their recorded sizes, damaged or unfinished shards)."""
    count = bad = 0
    for manifest_path in sorted(folder.rglob("*.json")):
        if manifest_path.name in NOT_MANIFESTS or manifest_path.name.startswith("."):
            continue
        try:
            manifest = read_json(manifest_path, MANIFEST_LIMIT)
            stem = manifest_path.name[: -len(".json")]
            sizes = [(manifest_path.with_name(f"{stem}.{part}.npy"), manifest[f"{part}_bytes"])
                     for part in ("vecs", "ids" if "ids_bytes" in manifest else "keys")]  # fmt: skip
            if any(path.stat().st_size != size for path, size in sizes):
                raise ValueError("size")
            count += int(manifest["count"])
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            bad += 1
    bad += sum(1 for p in folder.rglob("*.vecs.npy") if not p.with_name(p.name[: -len(".vecs.npy")] + ".json").exists())
    return count, bad


def entries(root: Path | None = None) -> list[CacheEntry]:
    """One entry per model identity folder (the store's, then the legacy cache's)."""
    out = []
    for kind in (STORE, LEGACY):
        base = (root or cache_dir()) / kind
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            identity, ok = _identity(folder)
            meta = identity.get("metadata", {}) if isinstance(identity.get("metadata"), dict) else {}
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            count, bad = _count(folder)
            model = str(identity.get("model", "?")) if ok else "(no identity)"
            revision = str(meta.get("revision", "?"))
            out.append(CacheEntry(folder, model, revision, count, size, bad, ok, kind == LEGACY, held(folder)))
    return out


class Cleared(NamedTuple):
    removed: int  # model folders removed
    in_use: list[str]  # models whose folders a running run holds: left alone


def clear(root: Path | None = None, model: str | None = None, broken: bool = False) -> Cleared:
    """Delete stored vectors: of one model name, of folders whose identity is unreadable (``broken``), or all.
    A folder a running run holds is left alone (removing it would make that run fail or re-encode)."""
    removed, busy = 0, []
    for entry in entries(root):
        if (model is None and not broken) or entry.model == model or (broken and not entry.identity_ok):
            if entry.legacy:
                shutil.rmtree(entry.folder, ignore_errors=True)
            elif not remove_unless_in_use(entry.folder):
                busy.append(entry.model)
                continue
            removed += 1
    return Cleared(removed, busy)
