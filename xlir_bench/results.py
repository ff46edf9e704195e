"""Result files: one JSON document per (model, suite), written atomically, read back tolerantly.

Layout: ``<results_dir>/<suite>/<model>.json`` plus, with ``--save-run``,
``<results_dir>/runs/<suite>/<model>/<setting>.{run,qrels}``. A model label made only of ``[A-Za-z0-9._-]`` is its
own file name; any other label (``e5-small[dtype=int8]``, ``trained:ds-s0``, ``hashgram:ü``) gets a readable slug
plus ``+`` and a hash of the full label, so two different labels never share a file (``+`` never occurs in a
plain name). Writes go to a temporary file in the target folder and are renamed into place, so an interrupted or
failed run never leaves a half-written or damaged result. A re-run of some settings keeps the settings the file
already holds for the same model and data (see :func:`merge_previous`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import fileio
from .errors import XlirError
from .fileio import JSON_LIMIT, loads_strict, read_json

# Version 2 stores ``per_query`` packed (see :func:`pack_per_query`); version 1 stored it as plain JSON. The content
# is the same, so a version-1 file is read as version 2.
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
PACKED = "zlib_base64"  # the key of a packed per_query member
RESERVED_FOLDERS = ("runs", "experiments", "superseded")  # beside the per-suite folders; not results themselves
REQUIRED_KEYS = ("schema_version", "model", "suite", "settings")


def results_dir(option: str | os.PathLike | None) -> Path:
    """Where a user's results go: ``--results-dir``, else ``XLIR_BENCH_RESULTS``, else
    ``$XDG_DATA_HOME/xlir-bench/results`` (``~/.local/share/xlir-bench/results``). Never the project's reference
    results (:func:`reference_dir`), which only change when someone passes their folder on purpose."""
    if option or os.environ.get("XLIR_BENCH_RESULTS"):
        return Path(option or os.environ["XLIR_BENCH_RESULTS"]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "xlir-bench" / "results"


def reference_dir() -> Path | None:
    """The project's reference results: ``XLIR_BENCH_REFERENCE``, else ``results/`` of the source checkout this
    package runs from (None when there is none, e.g. a wheel install)."""
    env = os.environ.get("XLIR_BENCH_REFERENCE")
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve().parents[1] / "results"
    return here if (here / "xquad-r").is_dir() else None


def _roots() -> list[tuple[str, str]]:
    """(absolute prefix, portable name), longest first: named roots, then the home folder."""
    from .suites.download import cache_dir

    named = [
        (os.environ.get("XLIR_BENCH_MODELS"), "$XLIR_BENCH_MODELS"),
        (str(cache_dir()), "$XLIR_BENCH_CACHE"),
        (os.environ.get("XLIR_BENCH_DATA"), "$XLIR_BENCH_DATA"),
        (tempfile.gettempdir(), "$TMPDIR"),
        (str(Path.home()), "~"),
    ]
    out = []
    for prefix, name in named:
        if prefix and os.path.isabs(prefix) and prefix != "/":
            out.append((os.path.normpath(prefix), name))
            real = os.path.realpath(prefix)
            if real != os.path.normpath(prefix):
                out.append((real, name))
    return sorted(out, key=lambda item: -len(item[0]))


def portable(doc, roots: list[tuple[str, str]] | None = None):
    """``doc`` with every machine-specific absolute path in its strings written relative to a named root
    (``$XLIR_BENCH_CACHE/models/...``, ``$TMPDIR/...``, ``~/...``): results are shared, home folders are not."""
    roots = _roots() if roots is None else roots
    if isinstance(doc, dict):
        return {k: portable(v, roots) for k, v in doc.items()}
    if isinstance(doc, list):
        return [portable(v, roots) for v in doc]
    if isinstance(doc, str) and "/" in doc:
        for prefix, name in roots:
            pattern = r"(?<![\w./-])" + re.escape(prefix) + r"(?=/|$|[\s\"'=:,;])"
            doc = re.sub(pattern, lambda _m, name=name: name, doc)
    return doc


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")


def file_stem(label: str) -> str:
    """A collision-free file name for a model label: the label itself when it is file-safe, else a readable slug,
    ``+`` and 10 hex digits of the label's SHA-256."""
    if _PLAIN.fullmatch(label):
        return label
    return f"{slug(label)[:80]}+{hashlib.sha256(label.encode()).hexdigest()[:10]}"


def result_path(root: Path, model: str, suite: str) -> Path:
    return root / slug(suite) / f"{file_stem(model)}.json"


def runs_folder(root: Path, model: str, suite: str) -> Path:
    return root / "runs" / slug(suite) / file_stem(model)


def check_target(path: Path) -> None:
    """Before any compute: the result's folder can be made and written, and the file itself is not a folder."""
    if path.is_dir():
        raise XlirError(f"cannot write {path}: a directory is in the way; move it or pass another --results-dir")
    ensure_writable(path.parent)


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


LEGACY_ENGINE = "two-engine harness (before engine-1)"


def engine_of(result: dict) -> str:
    """Which engine scored a result: its ``engine`` tag, or the two-engine harness for results older than it (they
    keep that tag: tables and comparisons say so rather than mix tie rules)."""
    return str(result.get("engine") or LEGACY_ENGINE)


def write_atomic(path: Path, text: str | Iterable[str]) -> None:
    """A result-side file (result, run, qrels), written atomically and readable by the group (see
    :func:`xlir_bench.fileio.write_atomic`)."""
    fileio.write_atomic(path, text, shared=True)


def pack_per_query(per_query: dict) -> dict:
    """``{"zlib_base64": ...}``: the per-query member as compact JSON, zlib-compressed, base64-encoded.

    Per-query AP is what paired tests and the domain-shift analysis read, and it is 95% of a result's bytes
    (1.4 MB of JSON for one XQuAD-R model, 5x less packed). Results are committed by the dozen, so the size
    matters; the numbers are unchanged (JSON floats round-trip exactly), and zlib has no timestamp, so the same
    numbers always give the same bytes."""
    compact = json.dumps(per_query, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return {PACKED: base64.b64encode(zlib.compress(compact.encode("utf-8"), 9)).decode("ascii")}


def unpack_per_query(member) -> dict:
    """The inverse of :func:`pack_per_query` (``ValueError`` for anything that is not a packed object); a plain
    (version-1) member is returned as it is."""
    if not isinstance(member, dict) or PACKED not in member:
        return member
    try:
        packed = base64.b64decode(member[PACKED], validate=True)
        inflate = zlib.decompressobj()
        raw = inflate.decompress(packed, JSON_LIMIT)
        if inflate.unconsumed_tail or not inflate.eof:
            raise ValueError("truncated, or larger than the result size limit")
        return loads_strict(raw.decode("utf-8"))
    except (TypeError, ValueError, zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(f"per_query cannot be unpacked ({exc})") from None


def read_result(path: Path, *, per_query: bool = True) -> dict:
    """A result file as a validated, current-version document with a plain ``per_query``: ``OSError`` when it
    cannot be read, ``ValueError`` naming the first problem when it is not a valid result.

    ``per_query=False`` leaves the per-query values out, unread: they are most of a result's bytes and most of the
    time spent reading one (inflating and parsing them is 85% of a leaderboard), and tables of the summary
    measures never look at them. Commands that do (compare, report, the experiments) read them and skip, with a
    warning, a result whose values cannot be unpacked."""
    data = read_json(path)
    if isinstance(data, dict) and data.get("schema_version") in READABLE_VERSIONS:
        if "per_query" in data:
            if per_query:
                data["per_query"] = unpack_per_query(data["per_query"])
            else:
                del data["per_query"]
        data["schema_version"] = SCHEMA_VERSION
    validate(data)
    return data


def dumps_result(result: dict) -> str:
    """Indented JSON for the summary, with the bulky ``per_query`` member packed (:func:`pack_per_query`) at the end.

    NaN or infinity anywhere is a bug upstream (JSON cannot hold them), reported before anything is written."""
    head = {k: v for k, v in result.items() if k != "per_query"}
    try:
        text = json.dumps(head, indent=1, ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise XlirError(f"result of {result['model']['name']!r} holds a NaN or infinite value ({exc})") from None
    if "per_query" not in result:
        return text + "\n"
    try:
        bulk = json.dumps(pack_per_query(result["per_query"]))
    except ValueError as exc:
        name = result["model"]["name"]
        raise XlirError(f"per-query values of {name!r} hold a NaN or infinite value ({exc})") from None
    return f'{text[:-2]},\n "per_query": {bulk}\n}}\n'


def write_result(root: Path, result: dict) -> tuple[Path, list[str]]:
    """Write ``result`` (merged with what the file already holds, see :func:`merge_previous`); return the path
    and notes for the user about what was kept or dropped."""
    path = result_path(root, result["model"]["name"], result["suite"]["name"])
    # machine paths become named roots before the merge compares model sections and before anything is written
    result.update(portable({k: v for k, v in result.items() if k != "per_query"}))
    notes = merge_previous(result, path)
    write_atomic(path, dumps_result(result))
    return path, notes


def _same_experiment(old: dict, new: dict) -> bool:
    """Same model, same data (topics, qrels and corpus content), same engine and vector storage: only then may
    settings of two runs stand in one result."""
    storage = ("shard_size", "shard_dtype")
    return (
        old.get("model") == new["model"]
        and old.get("suite", {}).get("checksums_md5") == new["suite"].get("checksums_md5")
        and old.get("suite", {}).get("corpus") == new["suite"].get("corpus")
        and old.get("suite", {}).get("passages_per_language") == new["suite"].get("passages_per_language")
        and engine_of(old) == engine_of(new)
        and {k: (old.get("provenance", {}).get("vectors") or {}).get(k) for k in storage}
        == {k: (new.get("provenance", {}).get("vectors") or {}).get(k) for k in storage}
        and old.get("suite", {}).get("name") == new["suite"]["name"]
        and isinstance(old.get("per_query"), dict)
        and old["per_query"].get("query_ids") == new.get("per_query", {}).get("query_ids")
    )


def merge_previous(result: dict, path: Path) -> list[str]:
    """Keep the settings a partial re-run did not compute: when ``path`` holds a valid result of the same model
    (name, plugin, options, metadata incl. revision) on the same data, its other settings (numbers and per-query
    AP) are carried into ``result``, and ``provenance.carried_over`` records where each came from. Results of a
    different model or data are not mixed in; the note says which settings that drops."""
    try:
        old = read_result(path)
    except (OSError, ValueError):
        return []
    missing = [s for s in old["settings"] if s not in result["settings"]]
    if not missing:
        return []
    if not _same_experiment(old, result):
        return [
            f"{path}: previous settings {', '.join(missing)} were for another model version or data and are dropped"
        ]
    carried = result["provenance"].setdefault("carried_over", {})
    for setting in missing:
        result["settings"][setting] = old["settings"][setting]
        if setting in old["per_query"].get("AP", {}):
            result["per_query"].setdefault("AP", {})[setting] = old["per_query"]["AP"][setting]
        if setting in (old["per_query"].get("rank_distance") or {}):
            result["per_query"].setdefault("rank_distance", {})[setting] = old["per_query"]["rank_distance"][setting]
        previous = old.get("provenance", {})
        carried[setting] = {k: previous.get(k) for k in ("command", "finished", "device")}
    order = [s for s in (*old["settings"], *result["settings"]) if s in result["settings"]]
    result["settings"] = {s: result["settings"][s] for s in dict.fromkeys(order)}
    return [f"{path}: kept {', '.join(missing)} from the previous run of the same model and data"]


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


def write_groups(path: Path, groups: dict[str, list[str]] | None) -> None:
    """How a saved run's queries are aggregated (see :meth:`xlir_bench.engine.outcome.Outcome.groups`)."""
    doc = {"aggregate": "mean over all queries"} if groups is None else {
        "aggregate": "mean per group, then over groups", "groups": groups}  # fmt: skip
    write_atomic(path, json.dumps(doc, indent=1))


@dataclass
class Loaded:
    results: list[dict]
    warnings: list[str]


def _number(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


def _check_numbers(block, where: str) -> None:
    if not isinstance(block, dict):
        raise ValueError(f"{where} is {type(block).__name__}, not an object")
    for name, value in block.items():
        if not _number(value):
            raise ValueError(f"{where}.{name} is {value!r}, not a finite number")


def validate(data) -> None:
    """Raise ``ValueError`` naming the first problem unless ``data`` has the shape and types readers rely on:
    the identity fields, and finite numbers (or null) for every headline metric and bias value."""
    if not isinstance(data, dict):
        raise ValueError(f"the document is {type(data).__name__}, not an object")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if data["schema_version"] not in READABLE_VERSIONS:
        raise ValueError(
            f"schema_version {data['schema_version']!r} (this version reads {', '.join(map(str, READABLE_VERSIONS))};"
            " a newer xlir-bench wrote it)"
        )
    for section in ("model", "suite"):
        if not isinstance(data[section], dict) or not isinstance(data[section].get("name"), str):
            raise ValueError(f"{section} must be an object with a string name")
    if not isinstance(data["settings"], dict):
        raise ValueError(f"settings is {type(data['settings']).__name__}, not an object")
    for setting, block in data["settings"].items():
        if not isinstance(block, dict) or "metrics" not in block:
            raise ValueError(f"settings.{setting} has no metrics")
        _check_numbers(block["metrics"], f"settings.{setting}.metrics")
        if "bias" in block:
            bias = {k: v for k, v in block["bias"].items() if not isinstance(v, dict)} if isinstance(
                block["bias"], dict
            ) else block["bias"]  # fmt: skip
            _check_numbers(bias, f"settings.{setting}.bias")
    if "per_query" in data and not isinstance(data["per_query"], dict):
        raise ValueError("per_query is not an object")


def load_results(root: Path, *, per_query: bool = True) -> Loaded:
    """Every valid result under ``root``; unreadable, malformed or mistyped files (and FIFOs, devices, files above
    the size limit) are skipped with a warning each, so one bad file never hides the others. ``per_query``: as in
    :func:`read_result`."""
    results, warnings = [], []
    if not root.is_dir():
        return Loaded(results, [f"no results directory at {root}; run `xlir-bench run` first"])
    for path in sorted(root.glob("*/*.json")):
        if path.parent.name in RESERVED_FOLDERS:
            continue
        try:
            data = read_result(path, per_query=per_query)
            data["_path"] = str(path)
            results.append(data)
        except (OSError, ValueError, TypeError, UnicodeDecodeError) as exc:
            warnings.append(f"skipped {path}: not a valid result ({exc})")
    return Loaded(results, warnings)
