"""``xlir-bench compare``: is model A really better than B, and by how much? Paired, question-level statistics.

Per-query AP of each model (stored in every result), or a measure with a cutoff computed per query from the runs
saved beside the results (``--metric nDCG@10``), is paired query by query. A question and all its translations
form one cluster (LAReQA query ids are ``<lang>-<question id>``); in MIRACL every query is its own cluster. For
each pair of models: the mean difference, a cluster bootstrap 95% interval, a cluster sign-flip randomization
test, Holm's correction over all pairs shown, and an effect size (mean difference over the standard deviation of
the per-cluster differences). Results of different data (md5s), different query sets or different metric
definitions (tie rule, schema) are refused: their per-query values do not pair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from .errors import XlirError
from .metrics.significance import (
    cluster_differences,
    holm,
    paired_bootstrap_ci,
    paired_randomization,
    seed_test,
)
from .results import engine_of as results_engine

LAREQA = ("xquad-r", "mlqa-r")
AP_NAMES = ("AP", "mAP")  # the per-query measure every result stores; any other comes from the saved runs


@dataclass
class Comparison:
    a: str
    b: str
    mean_a: float
    mean_b: float
    difference: float
    ci95: tuple[float, float]
    p_value: float
    p_holm: float
    effect_size: float
    units: int
    queries: int
    seeds: tuple[int, int] = (1, 1)
    seed_p: float | None = None  # sign-flip test over paired seeds, when both sides have several
    seed_t_p: float | None = None  # paired t-test over the same seeds (the sign-flip test's floor is 2 / 2^seeds)

    def as_dict(self) -> dict:
        return {**self.__dict__, "ci95": list(self.ci95), "seeds": list(self.seeds)}


def clusters_of(suite: str, query_ids: list[str]) -> list[str]:
    """One cluster label per query: the question id for LAReQA suites, the query itself elsewhere."""
    if suite in LAREQA:
        return [qid.split("-", 1)[1] if "-" in qid else qid for qid in query_ids]
    return list(query_ids)


def per_query_values(result: dict, setting: str, metric: str = "AP", runs_root=None) -> tuple[list[str], np.ndarray]:
    """(unit ids, values) of one setting; cross-lingual values are flattened over target pools. AP comes from the
    result itself; any other measure from the run saved beside it (:func:`run_values`)."""
    if metric not in AP_NAMES:
        return run_values(result, setting, metric, runs_root)
    label = result["model"]["name"]
    per_query = result.get("per_query") or {}
    values = (per_query.get("AP") or {}).get(setting)
    ids = per_query.get("query_ids")
    if values is None or not isinstance(ids, list):
        raise XlirError(f"result of {label!r} has no per-query AP for {setting}; re-run it with this xlir-bench")
    if isinstance(values, dict):
        flat_ids = [f"{qid}@{pool}" for pool in sorted(values) for qid in ids]
        flat = [v for pool in sorted(values) for v in values[pool]]
        return flat_ids, np.array([np.nan if v is None else v for v in flat], dtype=np.float64)
    return list(ids), np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def run_values(result: dict, setting: str, metric: str, runs_root) -> tuple[list[str], np.ndarray]:
    """Per-query values of an ir-measures measure with a cutoff (``nDCG@10``, ``R@100``, ``P@5``), computed from the
    run saved with ``--save-run``, aligned with the result's own per-query AP. Exact, not an approximation: such a
    measure needs only the top k of a ranking and the qrels, and the run holds the engine's ranking (its tie rule)
    to its depth, so a cutoff no deeper than the run is required."""
    import ir_measures

    from .measures import parse, run_depth
    from .results import runs_folder

    ids, ap = per_query_values(result, setting)  # the units, and which of them the setting holds
    label, suite = result["model"]["name"], result["suite"]["name"]
    measure = parse([metric], "--metric")[0]
    folder = runs_folder(runs_root, label, suite) if runs_root is not None else None
    run, qrels = (folder / f"{setting}.run", folder / f"{setting}.qrels") if folder else (None, None)
    if run is None or not (run.is_file() and qrels.is_file()):
        raise XlirError(f"--metric {metric}: no saved {setting} run of {label!r} on {suite} (per-query values other "
                        "than AP come from it); re-run that model with --save-run")  # fmt: skip
    cutoff, depth = measure.params.get("cutoff"), run_depth(run)
    if cutoff is None or cutoff > depth:
        raise XlirError(f"--metric {metric}: needs a cutoff no deeper than the saved run of {label!r} ({depth}), "
                        f"so that it is exact (nDCG@10, R@{depth}, ...); AP is paired from the results")  # fmt: skip
    got = {m.query_id: float(m.value) for m in ir_measures.iter_calc(
        [measure], ir_measures.read_trec_qrels(str(qrels)), ir_measures.read_trec_run(str(run)))}  # fmt: skip
    missing = [q for q, a in zip(ids, ap) if not np.isnan(a) and q not in got]
    if missing:
        raise XlirError(f"the saved {setting} run of {label!r} on {suite} lacks {len(missing):,} of its queries "
                        f"({missing[0]}, ...); re-run it with --save-run")  # fmt: skip
    return ids, np.array([np.nan if np.isnan(a) else got[q] for q, a in zip(ids, ap)], dtype=np.float64)


def _check_pairable(results: list[dict], setting: str) -> None:
    first = results[0]
    for other in results[1:]:
        names = f"{first['model']['name']!r} and {other['model']['name']!r}"
        if other["suite"].get("checksums_md5") != first["suite"].get("checksums_md5"):
            raise XlirError(f"{names} were evaluated on different data (md5s differ); they cannot be paired")
        if results_engine(other) != results_engine(first):
            raise XlirError(f"{names} were scored by different engines ({results_engine(first)}; "
                            f"{results_engine(other)}), whose tie rules differ; re-run the older one")  # fmt: skip
        if other.get("tie_rule") != first.get("tie_rule") or other.get("schema_version") != first.get("schema_version"):
            raise XlirError(f"{names} use different metric definitions (tie rule or schema); they cannot be paired")
        if (other.get("per_query") or {}).get("query_ids") != (first.get("per_query") or {}).get("query_ids"):
            raise XlirError(f"{names} have different query sets; they cannot be paired")
    missing = [r["model"]["name"] for r in results if setting not in r["settings"]]
    if missing:
        raise XlirError(f"no {setting} setting in the results of {', '.join(map(repr, missing))}; run that setting")


def _seed_of(result: dict):
    return ((result["model"].get("metadata") or {}).get("training") or {}).get("seed")


def compare(
    groups, setting: str, resamples: int = 10000, seed: int = 0, metric: str = "AP", runs_root=None
) -> list[Comparison]:
    """``groups``: results, or (name, [results of the seeds of one configuration]) pairs. Per-query values of a
    configuration are averaged over its seeds; with several seeds on both sides, a sign-flip test over the seeds
    they share is added (seeds are the unit of training randomness). ``metric``: AP (from the results), or a
    measure with a cutoff computed per query from the saved runs under ``runs_root`` (:func:`run_values`)."""
    groups = [g if isinstance(g, tuple) else (g["model"]["name"], [g]) for g in groups]
    if len(groups) < 2:
        raise XlirError("compare needs at least two models")
    everything = [r for _, members in groups for r in members]
    _check_pairable(everything, setting)
    suite = everything[0]["suite"]["name"]
    ids, _ = per_query_values(everything[0], setting)
    clusters = clusters_of(suite, [i.split("@", 1)[0] for i in ids])
    each = {name: [per_query_values(r, setting, metric, runs_root)[1] for r in members] for name, members in groups}
    values = {name: np.mean(seeds, axis=0) for name, seeds in each.items()}
    ap = metric in AP_NAMES  # a seed's AP is its result's mAP; another measure's, the mean of its values
    per_seed = {
        name: {_seed_of(r): r["settings"][setting]["metrics"]["mAP"] if ap else float(np.nanmean(v))
               for r, v in zip(members, each[name])}
        for name, members in groups
    }  # fmt: skip
    out = []
    for a, b in combinations(values, 2):
        test = paired_randomization(values[a], values[b], permutations=resamples, seed=seed, clusters=clusters)
        low, high = paired_bootstrap_ci(values[a], values[b], clusters=clusters, resamples=resamples, seed=seed)
        shared = sorted(set(per_seed[a]) & set(per_seed[b]) - {None})
        across: dict = {}
        if len(per_seed[a]) > 1 and len(per_seed[b]) > 1 and len(shared) > 1:
            across = seed_test([per_seed[a][k] for k in shared], [per_seed[b][k] for k in shared])
        out.append(
            Comparison(
                a,
                b,
                float(np.nanmean(values[a])),
                float(np.nanmean(values[b])),
                test["mean_difference"],
                (low, high),
                test["p_value"],
                1.0,
                _effect_size(values[a], values[b], clusters),
                test["units"],
                test["n"],
                (len(per_seed[a]), len(per_seed[b])),
                across.get("p_value"),
                across.get("t_p_value"),
            )  # fmt: skip
        )
    for comparison, adjusted in zip(out, holm([c.p_value for c in out])):
        comparison.p_holm = adjusted
    return out


def shared_suites(docs: list[dict], names) -> list[str]:
    """The suites on which every one of ``names`` finds a result (as :func:`resolve_models` finds them): what
    ``compare`` runs on when no suite is named, the LAReQA suites first. A name that matches several results on a
    suite is an error there, as with ``--suite``, not a reason to leave that suite out unsaid."""
    from .suites import SUITES

    if len(set(names)) < 2:
        raise XlirError("compare needs at least two different models, e.g. xlir-bench compare e5-small bm25")
    known = list(SUITES)
    everywhere = sorted({str(doc["suite"]["name"]) for doc in docs},
                        key=lambda name: (known.index(name) if name in known else len(known), name))  # fmt: skip
    return [suite for suite in everywhere if None not in _found(docs, suite, names).values()]


def _found(docs: list[dict], suite: str, names) -> dict[str, list[dict] | None]:
    """What each name finds on ``suite`` (see :func:`resolve_models`), None where nothing; several variants at the
    first step that has any is an error listing them."""
    mine: dict[str, dict] = {}
    theirs: dict[str, dict] = {}
    for doc in docs:
        if doc["suite"]["name"] == suite:
            (theirs if doc.get("_reference") else mine).setdefault(doc["model"]["name"], doc)
    available = {**theirs, **mine}

    def seeds_of(name: str) -> list[dict]:
        return [doc for label, doc in sorted(available.items()) if re.fullmatch(rf"{re.escape(name)}-s\d+", label)]

    def find(name: str) -> list[dict] | None:
        for pool in (mine, theirs):
            if name in pool:
                return [pool[name]]
            variants = sorted(label for label in pool if label.startswith(f"{name}["))
            if len(variants) > 1:
                raise XlirError(f"{name!r} matches several {suite} results: {', '.join(variants)}; name one of them, "
                                f"quoted for the shell (compare '{variants[0]}' ...)")  # fmt: skip
            if variants:
                return [pool[variants[0]]]
        return seeds_of(name) or None

    return {m: find(m) for m in dict.fromkeys(names)}


def resolve_models(docs: list[dict], suite: str, names, reference: bool = False) -> list[tuple[str, list[dict]]]:
    """(name, results) per distinct name asked for: a model's result on ``suite``, or a configuration's seeds (the
    results named ``<name>-s<seed>``). A name finds, in this order: the user's result of that label, the user's
    results of that model whatever its options (``e5-small`` finds ``e5-small[dtype=int8]``, the label
    ``dtype=auto`` gave), a reference result of that label, a reference result of that model. Two candidates at
    the first step that has any is an error listing them; so is an unknown name, or fewer than two names."""
    asked = _found(docs, suite, names)
    unknown = [m for m, hit in asked.items() if hit is None]
    if unknown:
        have = ", ".join(sorted({doc["model"]["name"] for doc in docs if doc["suite"]["name"] == suite})) or "none"
        hint = "" if reference else " (--reference also searches the project's reference results)"
        raise XlirError(f"no {suite} result for {', '.join(map(repr, unknown))}; results on {suite}: {have}{hint}")
    found = {(hit[0]["model"]["name"] if len(hit) == 1 else m): hit for m, hit in asked.items()}  # as labelled
    if len(found) < 2:
        raise XlirError(
            "compare needs at least two different models, e.g. xlir-bench compare e5-small bm25 --suite ..."
        )
    return list(found.items())


def _effect_size(a: np.ndarray, b: np.ndarray, clusters: list[str]) -> float:
    """Mean per-query difference over the standard deviation of the per-cluster mean differences."""
    sums, sizes, n = cluster_differences(a, b, clusters)
    spread = (sums / sizes).std(ddof=1) if len(sums) > 1 else 0.0
    return float(sums.sum() / n / spread) if spread > 0 else 0.0
