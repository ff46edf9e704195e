"""Any ir-measures measure, by name (``P@5``, ``Judged@10``, ``ERR@20``, ...), next to the exact engine's.

Measures the exact engine computes over the full candidate pool (:data:`EXACT`) are read from the result as they
are. Any other measure is computed by ir-measures from the TREC run saved with ``--save-run``, which is cut at the
run depth: such a value is reported with that depth (``P@5 (top-100 run)``) and is never shown as exact. A measure
that needs a saved run where there is none is left empty with a note saying how to get one.
"""

from __future__ import annotations

from pathlib import Path

from .errors import XlirError
from .fileio import read_bytes

# ir-measures name -> the exact engine's column (computed over the full pool, trec_eval's tie rule)
EXACT = {"AP": "mAP", "R@1": "R@1", "R@10": "R@10", "R@100": "R@100", "nDCG@10": "nDCG@10", "RR": "MRR"}
RUN_LIMIT = 4 * 2**30


def parse(names, option: str = "--measure") -> list:
    """ir-measures measure objects for ``names``; an unknown or malformed name is one error line naming ``option``."""
    import ir_measures

    out = []
    for name in names:
        try:
            out.append(ir_measures.parse_measure(name))
        except (NameError, ValueError, TypeError, SyntaxError) as exc:
            raise XlirError(
                f"{option} {name!r}: not an ir-measures measure ({exc}); e.g. P@5, Judged@10, ERR@20"
            ) from None
    return out


def column(measure, depth: int | None) -> str:
    """The column a measure is shown under: exact ones under the engine's name, others with their run depth."""
    name = str(measure)
    if name in EXACT:
        return EXACT[name]
    return f"{name} (top-{depth} run)" if depth else name


def run_depth(run_path: Path) -> int:
    """The largest number of documents any query has in a TREC run file."""
    counts: dict[str, int] = {}
    for line in read_bytes(run_path, RUN_LIMIT).decode("utf-8").splitlines():
        qid = line.split(" ", 1)[0]
        counts[qid] = counts.get(qid, 0) + 1
    return max(counts.values(), default=0)


def from_run(measures: list, run_path: Path, qrels_path: Path, groups_path: Path | None = None) -> dict[str, float]:
    """Aggregates of ``measures`` over a saved run and its qrels, aggregated as the engine aggregates the setting:
    with ``<setting>.groups.json`` saying "mean per group, then over groups" (languages, language pairs), the
    per-query values ir-measures gives are averaged that way; otherwise over all queries (ir-measures' own mean)."""
    import json

    import ir_measures

    qrels = list(ir_measures.read_trec_qrels(str(qrels_path)))
    run = list(ir_measures.read_trec_run(str(run_path)))
    groups = None
    if groups_path is not None and groups_path.is_file():
        groups = json.loads(read_bytes(groups_path, RUN_LIMIT)).get("groups")
    if not groups:
        return {str(m): float(v) for m, v in ir_measures.calc_aggregate(measures, qrels, run).items()}
    per_query: dict[str, dict[str, float]] = {}
    for metric in ir_measures.iter_calc(measures, qrels, run):
        per_query.setdefault(str(metric.measure), {})[metric.query_id] = float(metric.value)
    out = {}
    for name, values in per_query.items():
        means = [sum(values.get(q, 0.0) for q in ids) / len(ids) for ids in groups.values() if ids]
        out[name] = sum(means) / len(means)
    return out


def extra_columns(results: list[dict], measures: list, runs_root: Path) -> tuple[dict, list[str]]:
    """{(model, suite, setting): {column: value}} for the non-exact ``measures``, and notes on what is missing."""
    from .results import runs_folder

    wanted = [m for m in measures if str(m) not in EXACT]
    values: dict[tuple[str, str, str], dict[str, float | None]] = {}
    notes: list[str] = []
    if not wanted:
        return values, notes
    for result in results:
        label, suite = result["model"]["name"], result["suite"]["name"]
        folder = runs_folder(runs_root, label, suite)
        for setting in result["settings"]:
            run, qrels = folder / f"{setting}.run", folder / f"{setting}.qrels"
            key = (label, suite, setting)
            if not (run.is_file() and qrels.is_file()):
                values[key] = {str(m): None for m in wanted}
                notes.append(f"{label} / {suite} / {setting}: no saved run for {', '.join(map(str, wanted))}; "
                             "re-run with --save-run")  # fmt: skip
                continue
            depth = run_depth(run)
            computed = from_run(wanted, run, qrels, folder / f"{setting}.groups.json")
            values[key] = {column(m, depth): computed.get(str(m)) for m in wanted}
    return values, notes
