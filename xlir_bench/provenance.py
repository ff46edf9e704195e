"""What a result records about how it was made, so a number can be traced and rerun."""

from __future__ import annotations

import datetime as dt
import platform
import shlex
import sys
from importlib import metadata as importlib_metadata

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
