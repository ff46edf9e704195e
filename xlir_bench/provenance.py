"""What a result records about how it was made, so a number can be traced and rerun."""

from __future__ import annotations

import datetime as dt
import platform
import shlex
import subprocess
import sys
from functools import cache
from importlib import metadata as importlib_metadata
from pathlib import Path

PACKAGES = (
    "xlir-bench",
    "numpy",
    "bm25s",
    "PyStemmer",
    "ir-datasets",
    "ir-measures",
    "pytrec-eval-terrier",
    "torch",
    "transformers",
    "sentence-transformers",
    "onnxruntime",
    "faiss-cpu",
    "faiss-gpu",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


@cache
def source_revision() -> dict[str, str | bool] | None:
    """The git commit of the xlir-bench source, when it runs from a checkout (``pip install -e``), and whether the
    package's tracked files differ from it; None for an installed copy. Why: the version number does not change
    between commits, so without it two results made by different code would say the same thing. Read once per
    process (the CLI reads it at start, so a long run names the code it started with)."""
    return revision_of(_checkout())


def source_record() -> dict | None:
    """What a result records as its source: :func:`source_revision` (the code the process started with) and, when
    the package's code has changed since (a commit or an edit to ``xlir_bench/`` during an hours-long experiment),
    ``changed_during_run``: the state now, since modules the process imported after it started come from that code.
    Commits that touch only results or docs leave it out."""
    start = source_revision()
    if start is None:
        return None
    now = revision_of(_checkout())
    if now is None or now == start:
        return dict(start)
    same_code = not now["modified"] and _git(_checkout(), "diff", "--quiet", str(start["commit"]), "HEAD", "--",
                                             "xlir_bench") == ""  # fmt: skip
    return dict(start) if same_code else {**start, "changed_during_run": now}


def _checkout() -> Path:
    return Path(__file__).resolve().parent.parent


def _git(root: Path, *args: str) -> str | None:
    """``git -C root args``'s output when it succeeds (status 0), else None: no git, no checkout, a timeout."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def revision_of(root: Path) -> dict[str, str | bool] | None:
    """``{"commit", "modified"}`` of the git checkout at ``root`` (modified: its tracked ``xlir_bench`` files)."""
    if not (root / ".git").exists():
        return None
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return None
    changed = _git(root, "status", "--porcelain", "--untracked-files=no", "--", "xlir_bench")
    return {"commit": commit, "modified": bool(changed)}


def command_line() -> str:
    return shlex.join(["xlir-bench", *sys.argv[1:]])


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def host() -> dict[str, str]:
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor()}


def resolve_device(requested: str) -> str:
    """``auto`` picks CUDA when torch sees a GPU, else CPU; an explicit CUDA request must be satisfiable."""
    from .errors import XlirError

    try:
        import torch  # optional: only neural plugins need it

        has_cuda = bool(torch.cuda.is_available())
        n_gpus = torch.cuda.device_count() if has_cuda else 0
    except ImportError:
        has_cuda, n_gpus = False, 0
    if requested == "auto":
        return "cuda" if has_cuda else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        index = requested.partition(":")[2]
        if not has_cuda:
            raise XlirError(f"--device {requested} requested but no CUDA GPU is available; use --device cpu or auto")
        if index and (not index.isdigit() or int(index) >= n_gpus):
            raise XlirError(f"--device {requested}: there are {n_gpus} CUDA device(s), cuda:0..cuda:{n_gpus - 1}")
        return requested
    raise XlirError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({platform.processor() or platform.machine()})"
