"""The domain-shift experiment: does mixing monolingual and cross-lingual batches make retrieval more robust?

Train the three strategies on one suite, evaluate them and the untrained base zero-shot on the other suite
(other articles; for MLQA-R -> XQuAD-R also unseen languages: el, ru, th, tr) in all three settings, then
summarise mean and standard deviation over seeds, with paired randomization tests on per-query AP against the
hybrid model. Training texts that also occur in the evaluation suite are counted first; above
``MAX_OVERLAP`` of the evaluation queries or candidates the experiment refuses to run unless told to.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import results, suites
from ..errors import XlirError
from ..fileio import read_json
from ..metrics.hierarchical import MARGIN, two_level_interval, verdict
from ..metrics.significance import holm, paired_bootstrap_ci, paired_randomization, sample_std, seed_test
from ..suites.records import SuiteData
from .data import ParallelData
from .readings import COMPARISONS, LEVEL, MEASURE_NAMES, STRATEGIES, reading, render_markdown  # noqa: F401

MAX_OVERLAP = 0.01
SUMMARY_KEYS = ("mAP", "mAP_macro_lang", "rank_distance", "lang_pref@1", "unseen_mAP", "unseen_rank_distance")


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


@dataclass
class Overlap:
    queries: float  # share of evaluation queries whose text occurs among the training texts
    candidates: float  # share of evaluation candidates whose text occurs among the training texts
    query_count: int
    candidate_count: int

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def measure_overlap(train: ParallelData, evaluation: SuiteData) -> Overlap:
    seen = set()
    for g in train.groups:
        seen.update(_norm(t) for t in g.queries.values())
        seen.update(_norm(t) for t in g.passages.values())
        for negatives in g.negatives.values():
            seen.update(_norm(t) for t in negatives)
    q_hits = sum(_norm(q.text) in seen for q in evaluation.queries)
    d_hits = sum(_norm(d.text) in seen for d in evaluation.docs)
    return Overlap(q_hits / len(evaluation.queries), d_hits / len(evaluation.docs), q_hits, d_hits)


def check_overlap(overlap: Overlap, allow: bool) -> None:
    worst = max(overlap.queries, overlap.candidates)
    if worst > MAX_OVERLAP and not allow:
        raise XlirError(
            f"training texts overlap the evaluation suite: {overlap.query_count} queries ({overlap.queries:.2%}) and "
            f"{overlap.candidate_count} candidates ({overlap.candidates:.2%}) occur verbatim; pass --allow-overlap "
            "to run anyway (the overlap is recorded in the summary)"
        )


# The configuration of the committed CPU run; other settings are spelled out in model and summary names, so runs
# with another configuration (the paper's batch 100 on a GPU, say) never reuse or overwrite these models.
REFERENCE = {
    "max_steps": 60,
    "batch_size": 32,
    "freeze_embeddings": True,
    "alpha": 0.5,
    "max_length": 64,
    "hard_negatives": False,
}


def variant(
    batch_size: int, freeze_embeddings: bool, alpha: float, max_length: int, hard_negatives: bool,
    schedule: str = "constant", draw: str = "coin",
) -> str:  # fmt: skip
    """Name suffix for the settings that differ from ``REFERENCE`` ("" for the reference configuration). The
    committed reference models drew hybrid batch kinds by coin, so an exact draw is named (``-exact``)."""
    parts = [] if schedule == "constant" else [f"alpha-{schedule}"]
    if draw == "exact":
        parts.append(draw)
    if batch_size != REFERENCE["batch_size"]:
        parts.append(f"b{batch_size}")
    if not freeze_embeddings:
        parts.append("full")
    if alpha != REFERENCE["alpha"]:
        parts.append(f"a{alpha:g}")
    if max_length != REFERENCE["max_length"]:
        parts.append(f"len{max_length}")
    if hard_negatives:
        parts.append("hn")
    return "".join(f"-{p}" for p in parts)


def model_name(base: str, train: str, strategy: str, seed: int, steps: int, suffix: str = "") -> str:
    return results.slug(f"ds-{base}-{train}-{strategy}-{steps}st{suffix}-s{seed}")


def planned_models(
    *, base: str, train: str, seeds: int, max_steps: int, batch_size: int, alpha: float, max_length: int,
    hard_negatives: bool, freeze_embeddings: bool, alpha_schedule: str = "constant", alpha_draw: str = "exact",
    **_,
) -> list[tuple[int, str, tuple[float, str, str], str]]:  # fmt: skip
    """(seed, strategy, (alpha, schedule, draw), model name) of every model an experiment trains, seed-major.
    Alpha and its schedule only shape hybrid batches: mono and cross models are the reference ones, so an alpha
    sweep trains hybrid models only and compares them with the same mono and cross models."""
    out = []
    for seed in range(seeds):
        for strategy in STRATEGIES:
            hybrid = strategy == "hybrid"
            own = (alpha, alpha_schedule, alpha_draw) if hybrid else (REFERENCE["alpha"], "constant", "exact")
            suffix = variant(batch_size, freeze_embeddings, own[0], max_length, hard_negatives, own[1], own[2] * hybrid)
            out.append((seed, strategy, own, model_name(base, train, strategy, seed, max_steps, suffix)))
    return out


CARD_FIELDS = ("base", "strategy", "seed", "data", "max_steps", "batch_size", "alpha", "alpha_schedule",
               "max_length", "lr", "hard_negatives", "freeze_embeddings")  # fmt: skip


def draw_of(record: dict) -> str | None:
    """How a record's hybrid batch kinds were drawn (cards before the exact draw flipped a coin); None for mono
    and cross, whose batches do not depend on it."""
    return record.get("alpha_draw", "coin") if record.get("strategy") == "hybrid" else None


def check_reusable(folder: Path, config) -> None:
    """A trained model is reused only if its card says it was trained the way this run asks."""
    from .trainer import TRAINER_VERSION

    try:
        card = read_json(folder / "card.json")
    except (OSError, ValueError) as exc:
        raise XlirError(f"{folder / 'card.json'} is unreadable ({exc}); delete {folder} to retrain") from None
    wanted = {k: getattr(config, k) for k in CARD_FIELDS}
    wanted["trainer_version"] = TRAINER_VERSION
    differ = [f"{k}={card.get(k)!r} (this run: {v!r})" for k, v in wanted.items() if card.get(k) != v]
    if draw_of(card) != draw_of(vars(config)):
        differ.append(f"alpha_draw={draw_of(card)!r} (this run: {draw_of(vars(config))!r})")
    if differ:
        raise XlirError(
            f"{folder} holds a model trained with {', '.join(differ)}; delete it or set XLIR_BENCH_MODELS to "
            "another folder"
        )


def committed_result(root: Path, label: str, suite: SuiteData, config=None) -> dict | None:
    """A result already in ``root`` for this model on this data (md5s), so a re-run (or the next session, on a
    machine without the trained weights) skips what is done. For a trained model its recorded training must match
    ``config`` field by field and the trainer version must be the current one."""
    from .trainer import TRAINER_VERSION

    try:
        result = results.read_result(results.result_path(root, label, suite.name))
    except (OSError, ValueError):
        return None
    if result["suite"].get("checksums_md5") != suite.checksums or "multilingual" not in result["settings"]:
        return None
    if results.engine_of(result) != reuse_engine():  # one tie rule per summary: another engine's result is redone
        return None
    if config is not None:
        training = (result["model"].get("metadata") or {}).get("training") or {}
        keys = ("base", "strategy", "seed", "data", "alpha", "alpha_schedule", "languages")
        wanted = {k: getattr(config, k) for k in keys}
        if training.get("trainer_version") != TRAINER_VERSION or any(training.get(k) != v for k, v in wanted.items()):
            return None
        if draw_of(training) != draw_of(vars(config)):
            return None
    return result


def reuse_engine() -> str:
    """The engine whose results an experiment reuses: the current one, unless ``XLIR_BENCH_REUSE_ENGINE`` names
    another (only to regenerate a summary of committed results of that engine, never to mix two)."""
    import os

    from ..engine.core import ENGINE

    return os.environ.get("XLIR_BENCH_REUSE_ENGINE") or ENGINE


def summarise(
    rows: list[dict], per_query: dict[str, list[list[float]]], clusters=None, resamples: int = 10000, unseen=None,
    per_query_mono: dict[str, list[list[float]]] | None = None,
) -> dict:  # fmt: skip
    """Mean and sample std (ddof=1) over seeds per (strategy, setting); per-seed gaps; and for each pair of trained
    strategies: the mean per-query difference of multilingual AP with a cluster bootstrap 95% interval, a
    cluster-level sign-flip test (``clusters``: one question id per query, so a question and its translations are
    one unit), Holm's correction over the comparisons, and a sign-flip test across seeds (seeds are the units of
    training randomness). Per-query AP is averaged over each strategy's seeds first. ``unseen`` (a boolean per
    query: its language was never trained on) adds the same question-level comparisons on those queries alone,
    Holm-corrected as a family of their own."""
    table: dict = {}
    for row in rows:
        cell = table.setdefault(row["strategy"], {}).setdefault(row["setting"], {k: [] for k in SUMMARY_KEYS})
        for key in cell:
            if row.get(key) is not None:
                cell[key].append(row[key])
    summary = {
        strategy: {
            setting: {k: {"mean": float(np.mean(v)), "std": sample_std(v), "n": len(v)} for k, v in cells.items() if v}
            for setting, cells in settings.items()
        }
        for strategy, settings in table.items()
    }
    out = {
        "table": summary,
        "std": "sample standard deviation over seeds (ddof=1)",
        "seed_gaps_multilingual_mAP": seed_gaps(rows),
        "comparisons_multilingual_AP": compare_strategies(rows, per_query, clusters, resamples),
    }
    strategy_level(out["comparisons_multilingual_AP"], per_query, clusters, resamples)
    if "base" in per_query:
        settings = {"multilingual": per_query, "monolingual": per_query_mono or {}}
        out["vs_base"] = versus_base(settings, clusters, resamples)
    if unseen is not None and np.any(unseen):
        mask = np.asarray(unseen, dtype=bool)
        subset = {name: [np.asarray(run)[mask] for run in runs] for name, runs in per_query.items()}
        kept = None if clusters is None else np.asarray(clusters, dtype=object)[mask]
        out["comparisons_unseen_multilingual_AP"] = compare_strategies(
            rows, subset, kept, resamples, seed_key="unseen_mAP"
        )
    return out


def seed_gaps(rows: list[dict]) -> dict[str, list[float]]:
    """Multilingual mAP of hybrid minus each other trained strategy, one value per seed that has both."""
    by = {(r["strategy"], r["seed"]): r["mAP"] for r in rows if r["setting"] == "multilingual"}
    seeds = sorted({seed for strategy, seed in by if strategy == "hybrid"})
    return {
        f"hybrid - {other}": [by[("hybrid", s)] - by[(other, s)] for s in seeds if (other, s) in by]
        for other in STRATEGIES
        if other != "hybrid" and any((other, s) in by for s in seeds)
    }


def compare_strategies(rows, per_query, clusters=None, resamples: int = 10000, seed_key: str = "mAP") -> dict:
    """The COMPARISONS on per-query AP (question level) and on ``seed_key`` of the multilingual rows (seed level)."""
    by_seed = {
        (r["strategy"], r["seed"]): r[seed_key]
        for r in rows
        if r["setting"] == "multilingual" and r.get(seed_key) is not None
    }
    averaged = {name: np.mean(np.asarray(runs, dtype=np.float64), axis=0) for name, runs in per_query.items()}
    out = {}
    for a, b in COMPARISONS:
        if a not in averaged or b not in averaged:
            continue
        seeds = sorted({s for (k, s) in by_seed if k == a} & {s for (k, s) in by_seed if k == b})
        across = seed_test([by_seed[(a, s)] for s in seeds], [by_seed[(b, s)] for s in seeds]) if seeds else None
        out[f"{a} vs {b}"] = {
            **question_level(averaged[a], averaged[b], clusters, resamples),
            "unit": "question (all its translations)" if clusters is not None else "query",
            "seeds": {"a": len(per_query[a]), "b": len(per_query[b])}, "across_seeds": across,
        }  # fmt: skip
    mark_holm(list(out.values()))
    return out


def strategy_level(comparisons: dict, per_query: dict, clusters, resamples: int) -> None:
    """Adds to each comparison the primary figure for a claim about training strategies: the two-level (seed x
    question) bootstrap interval and the symmetric verdict (:mod:`xlir_bench.metrics.hierarchical`)."""
    for name, c in comparisons.items():
        a, b = name.split(" vs ")
        c["two_level"] = two_level_interval(per_query[a], per_query[b], clusters, resamples)
        c["verdict"] = verdict(c["two_level"])
        c["margin"] = MARGIN


def versus_base(per_query: dict[str, dict], clusters, resamples: int) -> dict:
    """Each trained strategy minus the untrained base, per setting with per-query AP (the base is one deterministic
    model, so only the strategy's seeds and the questions are resampled)."""
    out: dict = {}
    for setting, runs in per_query.items():
        if "base" not in runs:
            continue
        for strategy in (s for s in STRATEGIES if s in runs):
            interval = two_level_interval(runs[strategy], runs["base"][0], clusters, resamples)
            out.setdefault(strategy, {})[setting] = {**interval, "verdict": verdict(interval)}
    return out


def question_level(a, b, clusters, resamples: int) -> dict:
    """Mean per-query difference a - b with its cluster bootstrap 95% interval and cluster sign-flip test."""
    test = paired_randomization(a, b, clusters=clusters)
    low, high = paired_bootstrap_ci(a, b, clusters=clusters, resamples=resamples)
    return {"mean_difference": test["mean_difference"], "ci95": [low, high], "p_value": test["p_value"],
            "units": test["units"], "queries": test["n"]}  # fmt: skip


def mark_holm(tests: list[dict], p_key: str = "p_value") -> None:
    """Holm over ``tests`` (one family), adding ``p_holm`` and ``significant`` (at ``LEVEL``) to each."""
    for test, adjusted in zip(tests, holm([t[p_key] for t in tests])):
        test["p_holm"] = adjusted
        test["significant"] = adjusted < LEVEL


def records_for(result: dict, strategy: str, seed: int, unseen: list[str] = ()) -> list[dict]:
    """Leaderboard rows of one result, tagged with strategy and seed; the multilingual row also gets the mean
    over the query languages never seen in training (``unseen``) of their mAP and rank distance."""
    from ..report import records_of

    rows = [
        {**{k: v for k, v in r.items() if not k.startswith("_")}, "strategy": strategy, "seed": seed}
        for r in records_of(result)
    ]
    per_language = result["settings"].get("multilingual", {}).get("per_language", {})
    present = [lang for lang in unseen if lang in per_language]
    for row in rows:
        if row["setting"] == "multilingual" and per_language:
            row["mAP_macro_lang"] = float(np.mean([block["mAP"] for block in per_language.values()]))
        if row["setting"] == "multilingual" and present:
            row["unseen_mAP"] = float(np.mean([per_language[lang]["mAP"] for lang in present]))
            distances = [per_language[lang].get("rank_distance") for lang in present]
            if all(d is not None for d in distances):
                row["unseen_rank_distance"] = float(np.mean(distances))
    return rows


def scatter_rows(rows: list[dict]) -> list[dict]:
    """(config, seed, monolingual mAP, multilingual mAP) per trained model, for :func:`plots.mono_vs_multi`."""
    by: dict[tuple[str, int], dict] = {}
    for row in rows:
        if row["setting"] in ("monolingual", "multilingual") and row.get("mAP") is not None:
            by.setdefault((row["strategy"], row["seed"]), {})[row["setting"]] = row["mAP"]
    return [{"config": strategy, "seed": seed, **values} for (strategy, seed), values in by.items() if len(values) == 2]


def write_summary(root: Path, stem: str, summary: dict, meta: dict) -> tuple[Path, Path]:
    """The summary as JSON and Markdown, and the picture of its models (:func:`write_outputs`)."""
    title = f"{meta['base']}: {meta['train']} -> {meta['eval']}"
    scatter = scatter_rows(summary.get("rows", []))
    return write_outputs(root, stem, {"meta": meta, **summary}, render_markdown(summary, meta), scatter, title)


def write_outputs(root: Path, stem: str, data: dict, text: str, scatter: list[dict], title: str) -> tuple[Path, Path]:
    """``<stem>.json`` (``data``), ``<stem>.md`` (``text``) and, with matplotlib, ``<stem>.png``: monolingual
    against multilingual mAP, one point per model and seed (``scatter``), the mean per configuration marked; the
    Markdown links it."""
    folder = root / "experiments"
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    results.write_atomic(json_path, json.dumps(data, indent=1) + "\n")
    try:
        from ..report import plots

        plots.mono_vs_multi(scatter, folder / stem, title, formats=("png",))
        text += f"\n![monolingual vs multilingual mAP per model and seed]({stem}.png)\n"
    except XlirError:  # no matplotlib, or nothing to plot: the tables stand alone
        pass
    results.write_atomic(md_path, text)
    return json_path, md_path


EVAL_DTYPE = "fp32"
EVAL_BATCH_TOKENS = 64 * 128  # the token budget every committed domain-shift result was evaluated with
EVAL_BATCH_SIZE = 64


def evaluation_model(name: str, device: str):
    """``name`` loaded as the experiment evaluates it: in fp32 on every machine, since the models of one comparison
    must be evaluated alike whatever ``dtype=auto`` picks on the machine of the day (fp32 is the reference
    precision, so the label, and with it the result's file, stays the plain name). Its batches are cut under the
    token budget of the committed results (the CPU default is smaller since; fp32 embeddings then differ in the
    last bits, ~1e-7), so later models of a comparison are evaluated exactly as the earlier ones."""
    from ..plugins import load_model

    model = load_model(name, device=device, options={"dtype": EVAL_DTYPE})
    if hasattr(model.plugin, "use_token_budget"):
        model.plugin.use_token_budget(EVAL_BATCH_TOKENS)
    return model


def evaluate_as_experiments_do(name: str, suite: SuiteData, results_root: Path, progress, device: str) -> dict:
    """Evaluate ``name`` on ``suite`` as every experiment evaluates its models (:func:`evaluation_model`, batch size
    64, vectors stored) by the current engine, and write the result into ``results_root``."""
    from ..runner import evaluate as run_engine

    model = evaluation_model(name, device)
    result, _ = run_engine(model, suite, device=device, batch_size=EVAL_BATCH_SIZE, progress=progress, use_cache=True)
    results.write_result(results_root, result)
    return result


def run_domain_shift(*, results_root: Path, **options) -> tuple[Path, Path]:
    """Train (or resume) every strategy for every seed, evaluate all models plus the base, write the summary."""
    summary, meta, stem = domain_shift(results_root=results_root, **options)
    return write_summary(results_root, stem, summary, meta)


def domain_shift(
    *, base: str, train: str, evaluate: str, seeds: int, max_steps: int, batch_size: int, alpha: float,
    max_length: int, hard_negatives: bool, freeze_embeddings: bool, allow_overlap: bool, data_dir,
    results_root: Path, progress, command: str, device: str = "cpu", precision: str = "auto",
    alpha_schedule: str = "constant", alpha_draw: str = "exact", after_model=None,
) -> tuple[dict, dict, str]:  # fmt: skip
    """(summary, meta, file stem) of the experiment, training and evaluating what is not committed yet;
    ``after_model()``, when given, is called once each trained model has its result."""
    from ..models.trained import models_dir
    from . import bases
    from .data import from_suite
    from .trainer import TRAINER_VERSION, TrainConfig, Trainer

    if train == evaluate:
        raise XlirError("--train and --eval are the same suite; the experiment measures transfer to another one")
    chosen = bases.resolve(base)
    train_data = from_suite(suites.load(train, data_dir))
    eval_suite = suites.load(evaluate, data_dir)
    overlap = measure_overlap(train_data, eval_suite)
    check_overlap(overlap, allow_overlap)
    results.ensure_writable(results_root)

    unseen = sorted(set(eval_suite.languages) - set(train_data.languages))
    rows: list[dict] = []
    per_query: dict[str, list[list[float]]] = {}
    per_query_mono: dict[str, list[list[float]]] = {}

    def evaluate_one(name: str, strategy: str, seed: int, config=None) -> None:
        result = committed_result(results_root, name, eval_suite, config)
        if result is None:
            result = evaluate_as_experiments_do(name, eval_suite, results_root, progress, device)
        rows.extend(records_for(result, strategy, seed, unseen))
        per_query.setdefault(strategy, []).append(list(result["per_query"]["AP"]["multilingual"]))
        per_query_mono.setdefault(strategy, []).append(list(result["per_query"]["AP"]["monolingual"]))

    evaluate_one(base, "base", 0)
    suffix = variant(batch_size, freeze_embeddings, alpha, max_length, hard_negatives, alpha_schedule, alpha_draw)
    planned = planned_models(
        base=base, train=train, seeds=seeds, max_steps=max_steps, batch_size=batch_size, alpha=alpha,
        max_length=max_length, hard_negatives=hard_negatives, freeze_embeddings=freeze_embeddings,
        alpha_schedule=alpha_schedule, alpha_draw=alpha_draw,
    )  # fmt: skip
    for seed, strategy, own, name in planned:
        config = TrainConfig(
            base=base, base_path=chosen.path, strategy=strategy, alpha=own[0], alpha_schedule=own[1],
            alpha_draw=own[2],
            batch_size=batch_size,
            max_steps=max_steps, max_length=max_length, hard_negatives=hard_negatives,
            freeze_embeddings=freeze_embeddings, query_prefix=chosen.query_prefix,
            passage_prefix=chosen.passage_prefix, seed=seed,
            eval_every=max(1, max_steps // 8), checkpoint_every=max(1, max_steps // 8), patience=4,
            data=train, languages=train_data.languages, device=device, precision=precision,
        )  # fmt: skip
        folder = models_dir() / name
        if committed_result(results_root, f"trained:{name}", eval_suite, config) is None:
            if (folder / "card.json").is_file():
                check_reusable(folder, config)
            else:
                Trainer(config, train_data, folder, progress=progress).train()
        evaluate_one(f"trained:{name}", strategy, seed, config)
        if after_model is not None:
            after_model()
    meta = {
        "base": base, "train": train, "eval": evaluate, "seeds": seeds, "max_steps": max_steps,
        "batch_size": batch_size, "alpha": alpha, "max_length": max_length, "hard_negatives": hard_negatives,
        "freeze_embeddings": freeze_embeddings, "train_languages": list(train_data.languages),
        "unseen_languages": unseen, "overlap": overlap.as_dict(), "command": command,
        "device": device, "precision": precision, "eval_dtype": EVAL_DTYPE, "trainer_version": TRAINER_VERSION,
        "eval_batch_tokens": EVAL_BATCH_TOKENS, "engine": reuse_engine(),
        "alpha_schedule": alpha_schedule, "alpha_draw": alpha_draw, "train_questions": len(train_data.groups),
    }  # fmt: skip
    summary = summarise(
        rows, per_query, clusters=[q.group_id for q in eval_suite.queries],
        unseen=[q.language in unseen for q in eval_suite.queries], per_query_mono=per_query_mono,
    )  # fmt: skip
    summary["rows"] = rows
    stem = f"domain-shift-{results.slug(base)}-{train}-to-{evaluate}"
    if suffix or max_steps != REFERENCE["max_steps"]:
        stem += f"-{max_steps}st{suffix}"
    return summary, meta, stem
