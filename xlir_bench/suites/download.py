"""Where suite files come from: a local data folder, or pinned, checksummed downloads into a cache.

Resolution order for a suite file ``<suite>/<name>``:

1. ``--data-dir`` (passed in as ``data_dir``) or the ``XLIR_BENCH_DATA`` environment variable: the file must be
   there (laid out like ``<dir>/xquad-r/en.json``); nothing is downloaded.
2. Otherwise the user cache (``XLIR_BENCH_CACHE`` or ``~/.cache/xlir-bench``)``/data``: a file already there and
   matching its md5 is used; a missing one is downloaded from its pinned URL, verified, and moved into place.

Every file is verified against the md5 pinned in :data:`FILES` before it is read, so a truncated or edited
file never produces numbers.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import XlirError

LAREQA_XQUAD_COMMIT = "9bc8c7fb6dd8d01d72a05a93c2cb96882b0d299c"
LAREQA_MLQA_COMMIT = "354d67d1cd066854cdfbf5ad0e6105528976141d"
_RAW = "https://raw.githubusercontent.com/google-research-datasets/lareqa"


@dataclass(frozen=True)
class RemoteFile:
    """One pinned file of a suite: its path relative to the data folder, source URL and md5."""

    path: str
    url: str
    md5: str


def _lareqa(folder: str, commit: str, md5s: dict[str, str]) -> dict[str, RemoteFile]:
    return {
        f"{folder}/{lang}.json": RemoteFile(f"{folder}/{lang}.json", f"{_RAW}/{commit}/{folder}/{lang}.json", md5)
        for lang, md5 in md5s.items()
    }


FILES: dict[str, RemoteFile] = {
    **_lareqa(
        "xquad-r",
        LAREQA_XQUAD_COMMIT,
        {
            "ar": "1114954691ce6b8ed452aa2befcd21c2",
            "de": "ca34197b707b08bd4e03db4b3640e863",
            "el": "d4982e87c3eff32830cc4d33a26e63fa",
            "en": "b8c2383f52bc96438cf09a69cdccabdd",
            "es": "e4a69ab74a1f71d64f771f419c6e3eea",
            "hi": "390ee65a0559e65033f4cc44a27617fe",
            "ru": "e6ef8814695fead9f2227d9b44144417",
            "th": "1270594bf229e0fa2082d6508095e0b1",
            "tr": "6ee6aed1a7a5745b2cd31322c7d58c15",
            "vi": "72a138effea0cea9d5f7573553d70809",
            "zh": "2122b7e42e66c2d3cbdbe78d21b1a11c",
        },
    ),
    **_lareqa(
        "mlqa-r",
        LAREQA_MLQA_COMMIT,
        {
            "ar": "0cabca7da64041a9bcfbfa6397def23e",
            "de": "5fdb66b2614ed2556d05356968eca0b2",
            "en": "9ea5e240816f8a9c668ec49afbf45e7d",
            "es": "1dc80d875f9e37192668eb90bf3e8a2d",
            "hi": "84cee6c9864f8662ef1ef3ed5b96f990",
            "vi": "395e63b077fb8af6735ca9c4337d656c",
            "zh": "b9c78c32a0008dba5f93aea0ac5c2429",
        },
    ),
}


def cache_dir() -> Path:
    """The user cache root (``XLIR_BENCH_CACHE`` or ``~/.cache/xlir-bench``)."""
    env = os.environ.get("XLIR_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "xlir-bench"


def configured_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The explicitly configured data folder (argument, then ``XLIR_BENCH_DATA``), or None."""
    chosen = data_dir if data_dir is not None else os.environ.get("XLIR_BENCH_DATA") or None
    return Path(chosen) if chosen is not None else None


_MD5_MEMO: dict[tuple, str] = {}


_REACHABLE: dict[str, bool] = {}


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether ``url``'s host accepts a TCP connection, asked once per process and host with a short timeout, so an
    offline machine gets one line at once instead of a download library's retries (~30 s)."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.netloc not in _REACHABLE:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
                _REACHABLE[parsed.netloc] = True
        except OSError:
            _REACHABLE[parsed.netloc] = False
    return _REACHABLE[parsed.netloc]


def md5_of(path: Path) -> str:
    """md5 of a file, computed once per process for an unchanged file (the stat key includes the inode and ctime,
    which a replacement changes even when it keeps the size and mtime)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key not in _MD5_MEMO:
        digest = hashlib.md5()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _MD5_MEMO[key] = digest.hexdigest()
    return _MD5_MEMO[key]


def _how_to_provide(remote: RemoteFile) -> str:
    return (
        f"set XLIR_BENCH_DATA (or --data-dir) to a folder holding {remote.path}, "
        f"or go online so it can be fetched from {remote.url}"
    )


def _verify(path: Path, remote: RemoteFile) -> str:
    actual = md5_of(path)
    if actual != remote.md5:
        raise XlirError(
            f"checksum mismatch for {path}: md5 {actual}, expected {remote.md5}; "
            f"replace the file with the original from {remote.url}"
        )
    return actual


def download(remote: RemoteFile, target: Path, timeout: float = 60.0) -> None:
    """Fetch ``remote`` to ``target``: into a temporary file first, verified, then renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(remote.url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        _verify(Path(tmp), remote)
        os.replace(tmp, target)
    except XlirError:
        raise
    except OSError as exc:  # URLError is an OSError
        raise XlirError(f"could not download {remote.path} ({exc}); {_how_to_provide(remote)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def local_path(relpath: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Where a suite file is read from: the configured data folder, else the cache's data folder (where
    :func:`fetch` downloads it)."""
    configured = configured_data_dir(data_dir)
    return (configured if configured is not None else cache_dir() / "data") / relpath


def fetch(relpath: str, data_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Return the local path of a pinned suite file and its verified md5, downloading it if allowed."""
    remote = FILES[relpath]
    path = local_path(relpath, data_dir)
    if not path.is_file():
        if configured_data_dir(data_dir) is not None:
            raise XlirError(f"missing data file {path}; {_how_to_provide(remote)}")
        download(remote, path)
    return path, _verify(path, remote)
