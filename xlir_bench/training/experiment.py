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
from ..metrics.significance import paired_randomization
from ..suites.records import SuiteData
from .data import ParallelData

MAX_OVERLAP = 0.01
STRATEGIES = ("mono", "cross", "hybrid")


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


def model_name(base: str, train: str, strategy: str, seed: int, steps: int) -> str:
    return results.slug(f"ds-{base}-{train}-{strategy}-{steps}st-s{seed}")


def summarise(rows: list[dict], per_query: dict[str, list[float]]) -> dict:
    """Mean and std over seeds per (strategy, setting), plus paired tests against hybrid on multilingual AP."""
    table: dict = {}
    for row in rows:
        cell = table.setdefault(row["strategy"], {}).setdefault(
            row["setting"], {"mAP": [], "rank_distance": [], "lang_pref@1": []}
        )
        for key in cell:
            if row.get(key) is not None:
                cell[key].append(row[key])
    summary = {
        strategy: {
            setting: {
                k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for k, v in cells.items() if v
            }
            for setting, cells in settings.items()
        }
        for strategy, settings in table.items()
    }
    tests = {}
    if "hybrid" in per_query:
        for other, values in per_query.items():
            if other != "hybrid":
                tests[f"hybrid vs {other}"] = paired_randomization(per_query["hybrid"], values)
    return {"table": summary, "paired_tests_multilingual_AP": tests}


def render_markdown(summary: dict, meta: dict) -> str:
    lines = [
        f"# Domain shift: {meta['base']} trained on {meta['train']}, evaluated on {meta['eval']}",
        "",
        f"Command: `{meta['command']}`  ",
        f"Seeds: {meta['seeds']}; steps per model: {meta['max_steps']}; batch {meta['batch_size']}; "
        f"alpha {meta['alpha']}; frozen token embeddings: {meta.get('freeze_embeddings', False)}  ",
        f"Overlap of training texts with the evaluation suite: queries {meta['overlap']['queries']:.2%}, "
        f"candidates {meta['overlap']['candidates']:.2%}",
        "",
        "| model | multilingual mAP | monolingual mAP | cross-lingual mAP | rank distance | lang_pref@1 |",
        "|---|---|---|---|---|---|",
    ]

    def cell(strategy, setting, key, digits=4):
        value = summary["table"].get(strategy, {}).get(setting, {}).get(key)
        if not value:
            return ""
        text = f"{value['mean']:.{digits}f}"
        return text + (f" ± {value['std']:.{digits}f}" if value["n"] > 1 else "")

    for strategy in ("base", *STRATEGIES):
        if strategy in summary["table"]:
            lines.append(
                f"| {strategy} | {cell(strategy, 'multilingual', 'mAP')} | {cell(strategy, 'monolingual', 'mAP')} | "
                f"{cell(strategy, 'cross-lingual', 'mAP')} | {cell(strategy, 'multilingual', 'rank_distance', 1)} | "
                f"{cell(strategy, 'multilingual', 'lang_pref@1', 3)} |"
            )
    if summary["paired_tests_multilingual_AP"]:
        lines += ["", "Paired sign-flip randomization tests on per-query multilingual AP (first seed):", ""]
        for name, test in summary["paired_tests_multilingual_AP"].items():
            lines.append(
                f"- {name}: mean difference {test['mean_difference']:+.4f}, p = {test['p_value']:.4f} (n = {test['n']})"
            )
    return "\n".join(lines) + "\n"


def records_for(result: dict, strategy: str, seed: int) -> list[dict]:
    from ..report import records_of

    return [{**r, "strategy": strategy, "seed": seed} for r in records_of(result)]


def write_summary(root: Path, stem: str, summary: dict, meta: dict) -> tuple[Path, Path]:
    folder = root / "experiments"
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    results.write_atomic(json_path, json.dumps({"meta": meta, **summary}, indent=1) + "\n")
    results.write_atomic(md_path, render_markdown(summary, meta))
    return json_path, md_path


def run_domain_shift(
    *, base: str, train: str, evaluate: str, seeds: int, max_steps: int, batch_size: int, alpha: float,
    max_length: int, hard_negatives: bool, freeze_embeddings: bool, allow_overlap: bool, data_dir,
    results_root: Path, progress, command: str,
) -> tuple[Path, Path]:  # fmt: skip
    """Train (or resume) every strategy for every seed, evaluate all models plus the base, write the summary."""
    from ..plugins import load_model
    from ..runner import evaluate_model
    from . import bases
    from .data import from_suite
    from .trainer import TrainConfig, Trainer, models_dir

    if train == evaluate:
        raise XlirError("--train and --eval are the same suite; the experiment measures transfer to another one")
    chosen = bases.resolve(base)
    train_data = from_suite(suites.load(train, data_dir))
    eval_suite = suites.load(evaluate, data_dir)
    overlap = measure_overlap(train_data, eval_suite)
    check_overlap(overlap, allow_overlap)
    results.ensure_writable(results_root)

    rows, per_query = [], {}

    def evaluate_one(name: str, strategy: str, seed: int) -> None:
        model = load_model(name, device="cpu")
        result, _ = evaluate_model(model, eval_suite, device="cpu", batch_size=64, progress=progress, use_cache=True)
        results.write_result(results_root, result)
        rows.extend(records_for(result, strategy, seed))
        if seed == 0:
            per_query[strategy] = [v for v in result["per_query"]["AP"]["multilingual"]]

    evaluate_one(base, "base", 0)
    for seed in range(seeds):
        for strategy in STRATEGIES:
            name = model_name(base, train, strategy, seed, max_steps)
            config = TrainConfig(
                base=base, base_path=chosen.path, strategy=strategy, alpha=alpha, batch_size=batch_size,
                max_steps=max_steps, max_length=max_length, hard_negatives=hard_negatives,
                freeze_embeddings=freeze_embeddings, query_prefix=chosen.query_prefix,
                passage_prefix=chosen.passage_prefix, seed=seed,
                eval_every=max(1, max_steps // 8), checkpoint_every=max(1, max_steps // 8), patience=4,
                data=train, languages=train_data.languages,
            )  # fmt: skip
            folder = models_dir() / name
            if not (folder / "card.json").is_file():
                Trainer(config, train_data, folder, progress=progress).train()
            evaluate_one(f"trained:{name}", strategy, seed)
    meta = {
        "base": base, "train": train, "eval": evaluate, "seeds": seeds, "max_steps": max_steps,
        "batch_size": batch_size, "alpha": alpha, "max_length": max_length, "hard_negatives": hard_negatives,
        "freeze_embeddings": freeze_embeddings,
        "overlap": overlap.as_dict(), "command": command,
    }  # fmt: skip
    summary = summarise(rows, per_query)
    summary["rows"] = rows
    return write_summary(results_root, f"domain-shift-{results.slug(base)}-{train}-to-{evaluate}", summary, meta)
