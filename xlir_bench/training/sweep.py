"""The alpha sweep of the domain-shift experiment: does any share of monolingual batches, fixed or moving during
training, transfer better than the paper's fixed 0.5?

Configurations, all trained on the same seeds and evaluated zero-shot as in :mod:`.experiment`: alpha = 1 (the
mono model), 0.75, 0.5 (the reference hybrid), 0.25, 0 (the cross model), and two schedules, alpha rising linearly
from 0 to 1 over training (cross-lingual batches early, monolingual late) and falling from 1 to 0. The pure models
are the experiment's mono and cross models; only hybrid models are trained per configuration.

The question asked of the numbers: does a configuration beat fixed 0.5 on multilingual mAP *and* rank distance at
equal monolingual mAP? Each configuration is compared with fixed 0.5 on

* multilingual and monolingual AP per query, averaged over each configuration's seeds: mean difference, cluster
  bootstrap 95% interval and cluster sign-flip test (a question and its translations are one unit), Holm-corrected
  over the configurations, one family per measure;
* multilingual mAP and rank distance per seed, paired by seed: the paired t-test (Holm over the configurations).
  Rank distance is compared across seeds only: the per-query rank distances of the reference models, trained before
  results kept them, are not in their files;
* multilingual AP on the queries of languages never trained on (el/ru/th/tr for MLQA-R -> XQuAD-R), the same
  question-level tests as their own Holm family: reported with the mean per configuration, not part of "beats".

"Beats" means: multilingual AP higher at the question level and across seeds, rank distance lower across seeds, and
monolingual AP not lower at the question level (all after Holm, at ``LEVEL``). Training runs seed-major (every
configuration's seed 0 before any seed 1), so an interrupted sweep still covers every configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import results, suites
from ..errors import XlirError
from ..fileio import read_json
from ..metrics.significance import p_text, sample_std, seed_test
from .experiment import LEVEL, REFERENCE, domain_shift, mark_holm, question_level, write_outputs, write_summary


@dataclass(frozen=True)
class Config:
    label: str
    strategy: str  # the strategy whose models this configuration uses
    alpha: float
    schedule: str = "constant"


SWEEP = (
    Config("alpha=1 (mono)", "mono", 1.0),
    Config("alpha=0.75", "hybrid", 0.75),
    Config("alpha=0.5", "hybrid", 0.5),
    Config("alpha=0.25", "hybrid", 0.25),
    Config("alpha=0 (cross)", "cross", 0.0),
    Config("rising 0->1", "hybrid", REFERENCE["alpha"], "rising"),
    Config("falling 1->0", "hybrid", REFERENCE["alpha"], "falling"),
)
BASELINE = "alpha=0.5"
HYBRID_RUNS = [c for c in SWEEP if c.strategy == "hybrid"]  # one domain-shift run each (mono, cross reused)


def run_alpha_sweep(*, seeds: int, results_root: Path, **common) -> tuple[Path, Path]:
    """Train and evaluate every configuration seed-major, resuming from committed results. After each round of
    seeds the sweep's summary is rewritten over the seeds done so far (every configuration on the same seeds), so
    an interrupted sweep leaves a usable partial one; each configuration's own domain-shift summary is written
    once, in the final round, and never over a committed one with more seeds."""
    suite = suites.load(common["evaluate"], common["data_dir"])
    for done in range(1, seeds + 1):
        runs = {
            config.label: domain_shift(
                seeds=done, alpha=config.alpha, alpha_schedule=config.schedule, results_root=results_root, **common
            )
            for config in HYBRID_RUNS
        }
        if done == seeds:
            for summary, meta, stem in runs.values():
                if _seeds_written(results_root, stem) <= done:  # `--seeds 1` must not shrink a 5-seed summary
                    write_summary(results_root, stem, summary, meta)
        summaries = {label: {"meta": meta, **summary} for label, (summary, meta, _) in runs.items()}
        meta = {k: v for k, v in summaries[BASELINE]["meta"].items() if k not in ("alpha", "alpha_schedule")}
        meta.update(seeds=done, seeds_asked=seeds, configurations=[c.label for c in SWEEP])
        stem = "alpha-sweep-" + runs[BASELINE][2].removeprefix("domain-shift-")  # named as the fixed-0.5 experiment
        paths = write_sweep(results_root, stem, summarise_sweep(summaries, results_root, suite), meta)
    return paths


def _seeds_written(root: Path, stem: str) -> int:
    """Seeds of the summary already at ``root/experiments/<stem>.json`` (0 when there is none or it is unreadable)."""
    try:
        return int(read_json(root / "experiments" / f"{stem}.json")["meta"]["seeds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def seed_rows(summaries: dict[str, dict]) -> dict[str, list[dict]]:
    """Per configuration, one record per seed: model label, monolingual and multilingual mAP, rank distance."""
    out: dict[str, list[dict]] = {}
    for config in SWEEP:
        source = summaries.get(BASELINE if config.strategy != "hybrid" else config.label)
        if source is None:
            continue
        by_seed: dict[int, dict] = {}
        for row in source.get("rows", []):
            if row["strategy"] != config.strategy or row["setting"] not in ("monolingual", "multilingual"):
                continue
            record = by_seed.setdefault(row["seed"], {"seed": row["seed"], "model": row["model"]})
            record[row["setting"]] = row["mAP"]
            if row["setting"] == "multilingual":
                record["rank_distance"] = row.get("rank_distance")
                record["lang_pref@1"] = row.get("lang_pref@1")
                record["unseen"] = row.get("unseen_mAP")
        if by_seed:
            out[config.label] = [by_seed[s] for s in sorted(by_seed)]
    return out


def per_query_ap(root: Path, suite, records: list[dict]) -> dict[str, np.ndarray]:
    """Monolingual and multilingual AP per query, averaged over the seeds of one configuration."""
    runs: dict[str, list] = {"monolingual": [], "multilingual": []}
    for record in records:
        result = results.read_result(results.result_path(root, record["model"], suite.name))
        for setting, values in runs.items():
            values.append(result["per_query"]["AP"][setting])
    return {setting: np.mean(np.asarray(v, dtype=np.float64), axis=0) for setting, v in runs.items()}


def _stats(values) -> dict | None:
    values = [v for v in values if v is not None]
    return {"mean": float(np.mean(values)), "std": sample_std(values), "n": len(values)} if values else None


def summarise_sweep(summaries: dict[str, dict], root: Path, suite, resamples: int = 10000) -> dict:
    """Table per configuration, comparisons with fixed 0.5, and the verdict per configuration."""
    records = seed_rows(summaries)
    if BASELINE not in records:
        raise XlirError(f"the alpha sweep needs the {BASELINE} models; run `xlir-bench experiment alpha-sweep`")
    table = {
        label: {key: _stats([r.get(key) for r in rows])
                for key in ("monolingual", "multilingual", "rank_distance", "lang_pref@1", "unseen")}
        for label, rows in records.items()
    }  # fmt: skip
    clusters = [q.group_id for q in suite.queries]
    unseen = summaries[BASELINE].get("meta", {}).get("unseen_languages") or []
    mask = np.array([getattr(q, "language", None) in unseen for q in suite.queries], dtype=bool)
    unseen_clusters = np.asarray(clusters)[mask]
    base_ap = per_query_ap(root, suite, records[BASELINE])
    base_seed = {r["seed"]: r for r in records[BASELINE]}
    comparisons: dict[str, dict] = {}
    for label, rows in records.items():
        if label == BASELINE:
            continue
        ap = per_query_ap(root, suite, rows)
        entry: dict = {}
        for setting in ("multilingual", "monolingual"):
            entry[f"{setting}_AP"] = question_level(ap[setting], base_ap[setting], clusters, resamples)
        if mask.any():  # reported, not part of "beats": the question is about all query languages
            entry["unseen_multilingual_AP"] = question_level(
                ap["multilingual"][mask], base_ap["multilingual"][mask], unseen_clusters, resamples
            )
        common = [r for r in rows if r["seed"] in base_seed]
        for key in ("multilingual", "rank_distance"):
            pairs = [(r[key], base_seed[r["seed"]][key]) for r in common if r.get(key) is not None]
            if pairs and all(b is not None for _, b in pairs):
                entry[f"{key}_across_seeds"] = seed_test([a for a, _ in pairs], [b for _, b in pairs])
        comparisons[label] = entry
    _holm(comparisons, "multilingual_AP", "p_value")
    _holm(comparisons, "monolingual_AP", "p_value")
    _holm(comparisons, "unseen_multilingual_AP", "p_value")
    _holm(comparisons, "multilingual_across_seeds", "t_p_value")
    _holm(comparisons, "rank_distance_across_seeds", "t_p_value")
    for entry in comparisons.values():
        entry["shortfalls"] = shortfalls(entry)
        entry["beats_baseline"] = not entry["shortfalls"]
    return {
        "table": table,
        "comparisons_vs_baseline": comparisons,
        "baseline": BASELINE,
        "clusters": len(set(clusters)),
        "unseen_languages": unseen,
        "std": "sample standard deviation over seeds (ddof=1)",
        "scatter": [{"config": label, "seed": r["seed"], "monolingual": r["monolingual"],
                     "multilingual": r["multilingual"]} for label, rows in records.items() for r in rows],
    }  # fmt: skip


def _holm(comparisons: dict, key: str, p_key: str) -> None:
    """Holm over the configurations, one family per measure (untested ones left out)."""
    mark_holm([c[key] for c in comparisons.values() if key in c and c[key].get(p_key) is not None], p_key)


def _direction(test: dict | None) -> int:
    """+1 / -1 for a significant positive / negative difference, 0 otherwise (or untested)."""
    if not test or not test.get("significant"):
        return 0
    return 1 if test["mean_difference"] > 0 else -1


UNTESTED = "untested (one seed)"


def shortfalls(entry: dict) -> list[str]:
    """What keeps a configuration from beating fixed 0.5 (empty: it beats it). A test across seeds needs two
    seeds: with one it is named untested, not failed."""

    def across(key: str, name: str, sign: int) -> tuple[bool, str]:
        test = entry.get(key)
        if not test or test.get("t_p_value") is None:
            return False, f"{name} across seeds {UNTESTED}"
        return _direction(test) * sign > 0, f"{name} not {'higher' if sign > 0 else 'lower'} across seeds"

    checks = (
        (_direction(entry.get("multilingual_AP")) > 0, "multilingual AP not higher at the question level"),
        across("multilingual_across_seeds", "multilingual mAP", +1),
        across("rank_distance_across_seeds", "rank distance", -1),
        (_direction(entry.get("monolingual_AP")) >= 0, "monolingual AP lower"),
    )
    return [why for ok, why in checks if not ok]


def reading(sweep: dict, seeds_asked: int | None = None) -> list[str]:
    """The sweep's answer, generated from its numbers (README quotes it). Before all ``seeds_asked`` are in, the
    answer says how many it rests on: with two or three seeds the tests across seeds have almost no power."""
    lines = []
    unseen = "/".join(sweep.get("unseen_languages") or [])
    for label, entry in sweep["comparisons_vs_baseline"].items():
        seeds = sweep["table"][label]["multilingual"]["n"]
        parts = []
        for key, name in (("multilingual_AP", "multilingual AP"), ("monolingual_AP", "monolingual AP"),
                          ("unseen_multilingual_AP", f"multilingual AP on unseen {unseen}")):  # fmt: skip
            c = entry.get(key)
            if c is None:
                continue
            parts.append(f"{name} {c['mean_difference']:+.4f} [{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}], Holm "
                         f"{p_text(c['p_holm'])}")  # fmt: skip
        for key, name, digits in (("multilingual_across_seeds", "multilingual mAP", 4),
                                  ("rank_distance_across_seeds", "rank distance", 1)):  # fmt: skip
            c = entry.get(key)
            if c and "p_holm" in c:
                parts.append(
                    f"{name} across seeds {c['mean_difference']:+.{digits}f}, Holm t-test {p_text(c['p_holm'])}"
                )
        verdict = (
            "beats fixed 0.5"
            if entry["beats_baseline"]
            else f"does not beat fixed 0.5 ({', '.join(entry['shortfalls'])})"
        )
        lines.append(f"- {label} ({seeds} seed{'s' if seeds != 1 else ''}) vs {sweep['baseline']}: "
                     f"{'; '.join(parts)}: {verdict}")  # fmt: skip
    entries = sweep["comparisons_vs_baseline"]
    winners = [label for label, entry in entries.items() if entry["beats_baseline"]]
    untested = any(UNTESTED in why for entry in entries.values() for why in entry["shortfalls"])
    if untested and not winners:
        lines.append("- Answer: not yet; a configuration beats fixed alpha 0.5 only with the tests across seeds, which "
                     "need at least two seeds of every configuration.")  # fmt: skip
        return lines
    seeds = min(e["multilingual"]["n"] for e in sweep["table"].values() if e.get("multilingual"))
    so_far = f" so far ({seeds} of the {seeds_asked} seeds asked)" if seeds_asked and seeds < seeds_asked else ""
    lines.append(
        f"- Answer{so_far}: " + (f"{', '.join(winners)} beat{'s' if len(winners) == 1 else ''} fixed alpha 0.5"
                        if winners else "no alpha or schedule beats fixed alpha 0.5")
        + " on multilingual mAP and rank distance at equal monolingual mAP (higher multilingual AP at the question "
        f"level and across seeds, lower rank distance across seeds, monolingual AP not lower; Holm, {LEVEL})."
    )  # fmt: skip
    return lines


def render_sweep(sweep: dict, meta: dict) -> str:
    lines = [
        f"# Alpha sweep: {meta['base']} trained on {meta['train']}, evaluated on {meta['eval']}",
        "",
        f"Seeds: {meta['seeds']} of {meta.get('seeds_asked', meta['seeds'])} asked (every configuration on the same "
        f"seeds); steps per model: {meta['max_steps']}; batch {meta['batch_size']}; trainer version "
        f"{meta.get('trainer_version')}; question-level tests over {sweep['clusters']:,} questions (each with all its "
        "translations)",
        "",
    ]
    unseen = sweep.get("unseen_languages") or []
    header = "| model | seeds | monolingual mAP | multilingual mAP | rank distance | lang_pref@1 |"
    header += f" multilingual mAP, unseen ({'/'.join(unseen)}) |" if unseen else ""
    lines += [header, "|---" * header.count(" |") + "|"]

    def cell(stats, digits=4):
        if not stats:
            return ""
        return f"{stats['mean']:.{digits}f}" + (f" ± {stats['std']:.{digits}f}" if stats.get("std") else "")

    for label, row in sweep["table"].items():
        seeds = (row.get("multilingual") or {}).get("n", 0)
        lines.append(f"| {label} | {seeds} | {cell(row['monolingual'])} | {cell(row['multilingual'])} | "
                     f"{cell(row['rank_distance'], 1)} | {cell(row['lang_pref@1'], 3)} |"
                     + (f" {cell(row.get('unseen'))} |" if unseen else ""))  # fmt: skip
    note = '; unseen: query languages never trained on (their tests are reported, not part of "beats")'
    lines += ["", "± is the sample standard deviation over seeds (ddof=1); alpha is the share of monolingual batches"
              + (note if unseen else "") + ".",
              "", "**Reading** (generated from the numbers above):", ""]  # fmt: skip
    lines += reading(sweep, meta.get("seeds_asked"))
    return "\n".join(lines) + "\n"


def write_sweep(root: Path, stem: str, sweep: dict, meta: dict) -> tuple[Path, Path]:
    """JSON, Markdown and the picture: every configuration's models, one point per model and seed."""
    title = f"{meta['base']}: {meta['train']} -> {meta['eval']}, alpha sweep"
    return write_outputs(root, stem, {"meta": meta, **sweep}, render_sweep(sweep, meta), sweep["scatter"], title)
