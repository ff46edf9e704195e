"""The pre-registered confirmatory run (``docs/preregistration.md``): its configuration, and its verdict exactly
as registered.

Everything a verdict depends on is fixed here, in code committed before the run's first model trained: the
configuration (``REGISTERED``), the primary family (``PRIMARY``), the level (Bonferroni over the family), the
margin and the number of seeds. ``xlir-bench experiment confirmatory`` trains and evaluates seed-major, one round
of seeds after another, resuming from committed results; after each round the summary is rewritten, and until the
last registered seed is in it says "interim" and gives no verdict (the stopping rule: no look at a verdict before
all seeds are in, so no optional stopping).
"""

from __future__ import annotations

from pathlib import Path

from .. import results
from ..metrics.hierarchical import MARGIN, ci_key, verdict
from .experiment import domain_shift, planned_models, write_summary

REGISTERED = {
    "base": "e5-small", "train": "mlqa-r", "evaluate": "xquad-r", "seeds": 22, "max_steps": 120,
    "batch_size": 32, "alpha": 0.5, "max_length": 64, "hard_negatives": False, "freeze_embeddings": True,
    "alpha_schedule": "constant", "alpha_draw": "exact",
}  # fmt: skip
PRIMARY = (("hybrid", "mono"), ("hybrid", "cross"))  # multilingual mAP; one family, Bonferroni
LEVEL = 1 - 0.05 / len(PRIMARY)  # two-sided, per comparison: 0.975
SECONDARY = "every other interval in the summary (monolingual mAP, rank distance, cross vs mono, vs the base)"


def run_confirmatory(*, results_root: Path, data_dir, progress, command: str, device: str = "cpu",
                     precision: str = "auto") -> tuple[Path, Path]:  # fmt: skip
    """Train and evaluate round by round (seed-major), rewriting the summary after each round."""
    settings = {k: v for k, v in REGISTERED.items() if k != "seeds"}
    paths: tuple[Path, Path] | None = None
    have, total = models_with_results(results_root)  # the whole run at a glance: it spans sessions
    task = None if progress is None else progress.add_task(
        "confirmatory run: registered models with a result", total=total, completed=have
    )  # fmt: skip

    def after_model() -> None:
        if task is not None:
            progress.update(task, completed=models_with_results(results_root)[0])

    # rounds a summary already covers are not summarised again (each summary redoes every bootstrap); the first
    # round after them trains whatever an interrupted run left missing
    for done in range(rounds_written(results_root) + 1, REGISTERED["seeds"] + 1):
        summary, meta, stem = domain_shift(
            seeds=done, allow_overlap=False, data_dir=data_dir, results_root=results_root, progress=progress,
            command=command, device=device, precision=precision, after_model=after_model, **settings,
        )  # fmt: skip
        meta["registered_seeds"] = REGISTERED["seeds"]
        summary["registered"] = registered_verdict(summary, done)
        if summary["registered"]["status"] != "final":
            withhold_verdicts(summary)
        paths = write_summary(results_root, f"confirmatory-{stem.removeprefix('domain-shift-')}", summary, meta)
    if paths is None:  # every round was summarised before
        paths = (summary_path(results_root), summary_path(results_root).with_suffix(".md"))
    return paths


def models_with_results(results_root: Path) -> tuple[int, int]:
    """(registered models that have a result under ``results_root``, registered models): how far the run is."""
    paths = [results.result_path(results_root, f"trained:{name}", REGISTERED["evaluate"])
             for *_, name in planned_models(**REGISTERED)]  # fmt: skip
    return sum(path.is_file() for path in paths), len(paths)


def summary_path(results_root: Path) -> Path:
    name = f"{REGISTERED['base']}-{REGISTERED['train']}-to-{REGISTERED['evaluate']}-{REGISTERED['max_steps']}st-exact"
    return results_root / "experiments" / f"confirmatory-{name}.json"


def rounds_written(results_root: Path) -> int:
    """Seeds per strategy in the committed summary (0 without one): the rounds already summarised."""
    import json

    try:
        return int(json.loads(summary_path(results_root).read_text())["meta"]["seeds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def withhold_verdicts(summary: dict) -> None:
    """Interim summaries carry no verdict (the stopping rule): the verdict words go from every comparison, the
    intervals and means stay as data."""
    for key in ("comparisons_multilingual_AP", "comparisons_unseen_multilingual_AP"):
        for comparison in (summary.get(key) or {}).values():
            comparison.pop("verdict", None)
    for sides in (summary.get("vs_base") or {}).values():
        for entry in sides.values():
            if isinstance(entry, dict):
                entry.pop("verdict", None)


def registered_verdict(summary: dict, seeds_done: int) -> dict:
    """The primary family's verdicts at the registered level, or "interim" before every registered seed is in."""
    if seeds_done < REGISTERED["seeds"]:
        return {"status": f"interim: {seeds_done} of {REGISTERED['seeds']} seeds, no verdict (registered stopping "
                          "rule: the verdict is read once, with every seed)"}  # fmt: skip
    comparisons = summary["comparisons_multilingual_AP"]
    out = {"status": "final", "level": LEVEL, "margin": MARGIN, "verdicts": {}}
    for a, b in PRIMARY:
        interval = comparisons[f"{a} vs {b}"]["two_level"]
        out["verdicts"][f"{a} vs {b}"] = {
            "verdict": verdict(interval, MARGIN, LEVEL), "mean_difference": interval["mean_difference"],
            "interval": interval[ci_key(LEVEL)], "equivalence_interval": interval[ci_key(round(2 * LEVEL - 1, 6))],
        }  # fmt: skip
    return out


def render_registered(registered: dict) -> list[str]:
    """The registered verdict as Markdown lines (readings quote them above everything else)."""
    if registered["status"] != "final":
        return [f"**Registered verdict:** {registered['status']}."]
    level, margin = f"{registered['level'] * 100:g}", f"{registered['margin']:g}"
    lines = [f"**Registered verdict** (docs/preregistration.md; multilingual mAP, two-level bootstrap over seeds and "
             f"questions, {level}% intervals, equivalence within ±{margin}):", ""]  # fmt: skip
    for name, v in registered["verdicts"].items():
        low, high = v["interval"]
        lines.append(f"- {name}: **{v['verdict']}**, {v['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}]")
    return lines
