"""One (model, suite) evaluation end to end: score, measure, and assemble the result document."""

from __future__ import annotations

import time
from pathlib import Path

from . import provenance, results
from .cache import EmbeddingCache
from .evaluate import SETTINGS, Evaluator
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
    identity = model_identity(model) if use_cache else None
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
        "model": {
            "name": model.label,
            "plugin": model.name,
            "entry_point": model.info.target,
            "distribution": model.info.distribution,
            "kind": model.kind,
            "similarity": model.similarity,
            "options": {k: v if isinstance(v, (int, float, str, bool)) else repr(v) for k, v in model.options.items()},
            "metadata": model.metadata,
        },
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
        "provenance": {
            "command": provenance.command_line(),
            "device": provenance.device_description(device),
            "batch_size": batch_size,
            "embedding_cache": {"used": identity is not None, "hits": source.cache_hits},
            "seed": seed,
            "packages": provenance.package_versions(),
            "host": provenance.host(),
            "started": started,
            "finished": provenance.now(),
            "seconds": {
                "encode": round(source.encode_seconds, 3),
                "score": round(source.score_seconds, 3),
                "total": round(time.perf_counter() - clock, 3),
            },
        },
    }
    return result, evaluator.runs


def model_identity(model: LoadedModel) -> dict | None:
    """What makes a dense model's vectors what they are; None (no caching) without a declared revision."""
    if model.kind != "dense" or not model.metadata.get("revision") or model.metadata.get("revision") == "unknown":
        return None
    return {
        "model": model.name,
        "entry_point": model.info.target,
        "distribution": model.info.distribution,
        "similarity": model.similarity,
        "metadata": model.metadata,
        "options": {k: repr(v) for k, v in sorted(model.options.items())},
    }


def save_runs(root: Path, model: LoadedModel, suite: SuiteData, runs: dict[str, list]) -> list[Path]:
    """Write each setting's TREC run and matching qrels under ``root/runs/<suite>/<model>/``."""
    folder = root / "runs" / suite.name / results.slug(model.label)
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
