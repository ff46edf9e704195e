"""Every evaluation file xlir-bench reads, pinned (URL and md5), and the two jobs on them: putting them into a
folder (download, or copy from a folder someone has) and checking a folder someone made.

The layout is the one ``XLIR_BENCH_DATA`` expects (``xquad-r/<lang>.json``, ``mlqa-r/<lang>.json``,
``miracl/<lang>/dev/{topics,qrels}.tsv``); the default target is the user cache's ``data/`` folder, which the
loaders use when ``XLIR_BENCH_DATA`` is not set. LAReQA files are pinned here (:data:`download.FILES`), MIRACL's
dev topics and qrels by ir_datasets (its ``downloads.json``), so the md5s are the ones ir_datasets checks too.
MIRACL corpora are not included: they are large, and ir_datasets fetches them on first use.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import XlirError
from . import miracl
from .download import FILES, RemoteFile, cache_dir, download, md5_of

SUITE_NAMES = ("xquad-r", "mlqa-r", "miracl")


def default_target() -> Path:
    return cache_dir() / "data"


def pinned(suites: tuple[str, ...] | list[str] = SUITE_NAMES) -> list[RemoteFile]:
    """The pinned files of ``suites`` (names from :data:`SUITE_NAMES`; ``all`` means every one)."""
    wanted = set(SUITE_NAMES if "all" in suites else suites)
    unknown = wanted - set(SUITE_NAMES)
    if unknown:
        raise XlirError(f"unknown suite {', '.join(sorted(unknown))}; use {', '.join(SUITE_NAMES)} or all")
    out = [f for f in FILES.values() if f.path.split("/")[0] in wanted]
    if "miracl" in wanted:
        downloads = miracl._irds_downloads()
        for lang in miracl.LANGUAGES:
            for what in ("topics", "qrels"):
                entry = downloads[f"v1.0/{lang}/dev/{what}"]
                out.append(RemoteFile(f"miracl/{lang}/dev/{what}.tsv", entry["url"], entry["expected_md5"]))
    return out


@dataclass
class FileStatus:
    path: str
    status: str  # ok, missing, mismatch, downloaded, copied
    md5: str = ""

    @property
    def good(self) -> bool:
        return self.status in ("ok", "downloaded", "copied")


def check(folder: Path, remote: RemoteFile) -> FileStatus:
    path = folder / remote.path
    if not path.is_file():
        return FileStatus(remote.path, "missing")
    actual = md5_of(path)
    return FileStatus(remote.path, "ok" if actual == remote.md5 else "mismatch", actual)


def verify(folder: Path, suites=SUITE_NAMES) -> list[FileStatus]:
    """The state of every pinned file of ``suites`` in ``folder``."""
    return [check(folder, remote) for remote in pinned(suites)]


def _copy(source: Path, remote: RemoteFile, target: Path) -> None:
    """Copy a file that matches its md5 into place atomically (a temporary file, then a rename)."""
    origin = source / remote.path
    found = check(source, remote)
    if not found.good:
        raise XlirError(f"{origin} is {found.status} (md5 {found.md5 or '-'}, expected {remote.md5}); fix the source")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(origin, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch_all(
    target: Path, suites=SUITE_NAMES, source: Path | None = None, advance: Callable[[str], None] | None = None
) -> list[FileStatus]:
    """Make ``target`` hold every pinned file of ``suites``: files already there and intact are kept, the rest
    are copied from ``source`` (a folder in the same layout) or downloaded, and verified either way."""
    out = []
    for remote in pinned(suites):
        status = check(target, remote)
        if not status.good:
            path = target / remote.path
            try:
                if source is not None:
                    _copy(source, remote, path)
                    status = FileStatus(remote.path, "copied", remote.md5)
                else:
                    download(remote, path)
                    status = FileStatus(remote.path, "downloaded", remote.md5)
            except OSError as exc:
                raise XlirError(f"cannot write {path} ({exc.strerror or exc}); pass --to DIR") from None
        out.append(status)
        if advance is not None:
            advance(remote.path)
    return out
