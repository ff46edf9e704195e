"""Result files: one JSON document per (model, suite), written atomically, read back tolerantly.

Layout: ``<results_dir>/<suite>/<model>.json`` (model names are made file-safe), plus, with ``--save-run``,
``<results_dir>/runs/<suite>/<model>/<setting>.{run,qrels}``. Writes go to a temporary file in the target folder
and are renamed into place, so an interrupted or failed run never leaves a half-written or damaged result.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import XlirError

SCHEMA_VERSION = 1
RESERVED_FOLDERS = ("runs", "experiments")  # beside the per-suite result folders; not results themselves
REQUIRED_KEYS = ("schema_version", "model", "suite", "settings")


def results_dir(option: str | os.PathLike | None) -> Path:
    """``--results-dir``, else ``XLIR_BENCH_RESULTS``, else ``results/``."""
    return Path(option or os.environ.get("XLIR_BENCH_RESULTS") or "results")


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def result_path(root: Path, model: str, suite: str) -> Path:
    return root / slug(suite) / f"{slug(model)}.json"


def ensure_writable(root: Path) -> None:
    """Fail early (before any expensive work) when results cannot be written under ``root``."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise XlirError(
            f"results directory {root} is not writable ({exc.strerror or exc}); pass --results-dir DIR"
        ) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, text: str | Iterable[str]) -> None:
    """Write ``text`` (a string or an iterable of chunks) to ``path`` via a temporary sibling and a rename.

    The previous file, if any, stays intact when anything fails before the rename.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise XlirError(f"cannot write {path} ({exc.strerror or exc}); pass a writable --results-dir") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines([text] if isinstance(text, str) else text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def dumps_result(result: dict) -> str:
    """Indented JSON for the summary, with the bulky ``per_query`` member written compactly at the end."""
    head = {k: v for k, v in result.items() if k != "per_query"}
    text = json.dumps(head, indent=1, ensure_ascii=False, allow_nan=False)
    if "per_query" not in result:
        return text + "\n"
    bulk = json.dumps(result["per_query"], ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return f'{text[:-2]},\n "per_query": {bulk}\n}}\n'


def write_result(root: Path, result: dict) -> Path:
    path = result_path(root, result["model"]["name"], result["suite"]["name"])
    write_atomic(path, dumps_result(result))
    return path


def write_run(path: Path, rows: Iterable[tuple[str, list[str], list[float]]], tag: str) -> None:
    """A TREC run: ``qid Q0 docid rank score tag``, ranks from 1 in the order given."""
    lines = (
        f"{qid} Q0 {doc} {rank} {score!r} {tag}\n"
        for qid, docs, scores in rows
        for rank, (doc, score) in enumerate(zip(docs, scores), start=1)
    )
    write_atomic(path, lines)


def write_qrels(path: Path, rows: Iterable[tuple[str, str, int]]) -> None:
    write_atomic(path, "".join(f"{qid} 0 {doc} {rel}\n" for qid, doc, rel in rows))


@dataclass
class Loaded:
    results: list[dict]
    warnings: list[str]


def load_results(root: Path) -> Loaded:
    """Every valid result under ``root``; unreadable or malformed files are skipped with a warning each."""
    results, warnings = [], []
    if not root.is_dir():
        return Loaded(results, [f"no results directory at {root}; run `xlir-bench run` first"])
    for path in sorted(root.glob("*/*.json")):
        if path.parent.name in RESERVED_FOLDERS:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            missing = [k for k in REQUIRED_KEYS if not isinstance(data, dict) or k not in data]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            if data["schema_version"] != SCHEMA_VERSION:
                raise ValueError(f"schema_version {data['schema_version']} (this version reads {SCHEMA_VERSION})")
            data["_path"] = str(path)
            results.append(data)
        except (OSError, ValueError, TypeError) as exc:
            warnings.append(f"skipped {path}: not a valid result ({exc})")
    return Loaded(results, warnings)
