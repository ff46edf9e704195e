"""The length study: how long to train before validation loss stops improving, and whether to train the token
embeddings, decided on held-out questions of the *training* suite only (the evaluation suite never sees it).

Each arm (a strategy with frozen or trained token embeddings) trains for each seed up to ``max_steps``, validating
every ``eval_every`` steps on the trainer's fixed mono and cross validation batches and stopping after
``patience`` validations without a new best. The rules below were fixed before the study's first model trained:

* **length**: per arm, the step with the lowest validation loss averaged over seeds (over the steps every seed
  reached); the study's length is the largest of the frozen strategies' steps, so that one budget, equal for all
  strategies, cuts none of them short (early stopping with the best checkpoint still guards the others).
  An arm whose best step is its last common step has not converged, and the study says so.
* **token embeddings**: train them only if hybrid with trained embeddings reaches a best validation loss lower than
  hybrid with frozen ones on every seed, by more than ``EMBEDDING_MARGIN`` on average; otherwise keep them frozen
  (they are about 82% of e5-small's parameters and dominate a CPU step).

Every run's curve is written to ``results/experiments/length-study-*.json`` as soon as it ends, and a re-run skips
the runs recorded there, so the study resumes from committed results (the weights are not kept: only the curves
matter here, and each model is ~0.5 GB).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import results, suites
from ..errors import XlirError
from ..fileio import read_json

EMBEDDING_MARGIN = 0.01  # validation loss (InfoNCE, nats): below this a gain does not pay for training 96M more weights


@dataclass(frozen=True)
class Arm:
    strategy: str
    freeze_embeddings: bool

    @property
    def label(self) -> str:
        return f"{self.strategy}{'' if self.freeze_embeddings else ' (trained embeddings)'}"


FROZEN_ARMS = tuple(Arm(s, True) for s in ("hybrid", "mono", "cross"))
EMBEDDING_ARM = Arm("hybrid", False)


def study_stem(base: str, train: str, max_steps: int, batch_size: int) -> str:
    return f"length-study-{results.slug(base)}-{train}-{max_steps}st-b{batch_size}"


def run_length_study(
    *, base: str, train: str, seeds: int, max_steps: int, eval_every: int, patience: int, batch_size: int,
    max_length: int, embeddings: bool, data_dir, results_root: Path, progress, command: str, device: str = "cpu",
    precision: str = "auto",
) -> tuple[Path, Path]:  # fmt: skip
    """Train every (seed, arm) not yet recorded, seed-major, writing the study after each run; then decide."""
    from ..models.trained import models_dir
    from . import bases
    from .data import from_suite
    from .trainer import TRAINER_VERSION, TrainConfig, Trainer

    results.ensure_writable(results_root)
    chosen = bases.resolve(base)
    train_data = from_suite(suites.load(train, data_dir))
    stem = study_stem(base, train, max_steps, batch_size)
    json_path = results_root / "experiments" / f"{stem}.json"
    meta = {
        "base": base, "train": train, "max_steps": max_steps, "eval_every": eval_every, "patience": patience,
        "batch_size": batch_size, "max_length": max_length, "seeds_asked": seeds, "command": command,
        "device": device, "precision": precision, "trainer_version": TRAINER_VERSION,
        "embedding_margin": EMBEDDING_MARGIN,
    }  # fmt: skip
    runs = _recorded(json_path, meta)
    arms = (*FROZEN_ARMS, EMBEDDING_ARM) if embeddings else FROZEN_ARMS
    for seed in range(seeds):
        for arm in arms:
            if any(r["strategy"] == arm.strategy and r["freeze_embeddings"] == arm.freeze_embeddings
                   and r["seed"] == seed for r in runs):  # fmt: skip
                continue
            config = TrainConfig(
                base=base, base_path=chosen.path, strategy=arm.strategy, batch_size=batch_size, max_steps=max_steps,
                max_length=max_length, freeze_embeddings=arm.freeze_embeddings, query_prefix=chosen.query_prefix,
                passage_prefix=chosen.passage_prefix, seed=seed, eval_every=eval_every, patience=patience,
                checkpoint_every=eval_every, data=train, languages=train_data.languages, device=device,
                precision=precision,
            )  # fmt: skip
            name = results.slug(f"ls-{base}-{train}-{arm.strategy}-{max_steps}st-b{batch_size}"
                                f"{'' if arm.freeze_embeddings else '-full'}-s{seed}")  # fmt: skip
            folder = models_dir() / name
            card = read_json(folder / "card.json") if (folder / "card.json").is_file() else None
            if card is None or card.get("trainer_version") != TRAINER_VERSION or card.get("seed") != seed:
                card = Trainer(config, train_data, folder, progress=progress).train()
            runs.append(run_record(card))
            write_study(json_path, meta, runs)
            shutil.rmtree(folder, ignore_errors=True)
    return write_study(json_path, meta, runs)


def _recorded(path: Path, meta: dict) -> list[dict]:
    """The runs already in the study's file, if it was made with the same settings (else none: a study with other
    settings has another file name, and one with another trainer version is redone)."""
    try:
        saved = read_json(path)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise XlirError(f"{path} is unreadable ({exc}); move it away to start the study afresh") from None
    same = ("base", "train", "max_steps", "eval_every", "patience", "batch_size", "max_length", "trainer_version")
    if any(saved.get("meta", {}).get(k) != meta[k] for k in same):
        return []
    return list(saved.get("runs", []))


def run_record(card: dict) -> dict:
    """What the study keeps of a training run: its arm, its validation curve and where it was best."""
    keys = ("strategy", "freeze_embeddings", "seed", "steps", "stopped_early", "best_step", "best_validation_loss",
            "monolingual_batch_share", "monolingual_batch_share_kept", "validation_curve", "train_seconds",
            "device_used")  # fmt: skip
    return {k: card.get(k) for k in keys}


def mean_curve(runs: list[dict]) -> list[tuple[int, float]]:
    """(step, validation loss averaged over the runs) at the validated steps every run reached."""
    curves = [{p["step"]: p["validation_loss"] for p in r["validation_curve"]} for r in runs]
    common = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    return [(step, float(np.mean([c[step] for c in curves]))) for step in common]


def decide(runs: list[dict]) -> dict:
    """The registered rules (module docstring) applied to the recorded runs."""
    arms: dict[str, dict] = {}
    for arm in (*FROZEN_ARMS, EMBEDDING_ARM):
        mine = [r for r in runs if r["strategy"] == arm.strategy and r["freeze_embeddings"] == arm.freeze_embeddings]
        curve = mean_curve(mine)
        if not curve:
            continue
        best_step, best_loss = min(curve, key=lambda point: (point[1], point[0]))
        arms[arm.label] = {
            **asdict(arm), "seeds": sorted(r["seed"] for r in mine), "curve": curve, "best_step": best_step,
            "best_mean_validation_loss": best_loss, "converged": best_step < curve[-1][0],
            "run_best_steps": [r["best_step"] for r in mine],
        }  # fmt: skip
    frozen = [arms[a.label] for a in FROZEN_ARMS if a.label in arms]
    out: dict = {"arms": arms}
    if len(frozen) == len(FROZEN_ARMS):
        out["length"] = max(a["best_step"] for a in frozen)
        out["unconverged"] = [a["strategy"] for a in frozen if not a["converged"]]
    out["embeddings"] = embedding_decision(runs)
    return out


def embedding_decision(runs: list[dict]) -> dict | None:
    """Trained vs frozen token embeddings for hybrid, seed by seed (None until one seed has both)."""
    best = {(r["freeze_embeddings"], r["seed"]): r["best_validation_loss"] for r in runs if r["strategy"] == "hybrid"}
    seeds = sorted(s for (frozen, s) in best if not frozen and (True, s) in best)
    if not seeds:
        return None
    gains = [best[(True, s)] - best[(False, s)] for s in seeds]  # > 0: trained embeddings validate better
    train = all(g > 0 for g in gains) and float(np.mean(gains)) > EMBEDDING_MARGIN
    return {"seeds": seeds, "gain_per_seed": gains, "mean_gain": float(np.mean(gains)),
            "decision": "train the token embeddings" if train else "keep the token embeddings frozen"}  # fmt: skip


def write_study(json_path: Path, meta: dict, runs: list[dict]) -> tuple[Path, Path]:
    runs = sorted(runs, key=lambda r: (r["seed"], not r["freeze_embeddings"], r["strategy"]))
    decision = decide(runs)
    results.write_atomic(json_path, json.dumps({"meta": meta, "runs": runs, "decision": decision}, indent=1) + "\n")
    md_path = json_path.with_name(json_path.name.removesuffix(".json") + ".md")
    results.write_atomic(md_path, render(meta, runs, decision))
    return json_path, md_path


def render(meta: dict, runs: list[dict], decision: dict) -> str:
    lines = [
        f"# Length study: {meta['base']} trained on {meta['train']} (batch {meta['batch_size']})",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Up to {meta['max_steps']} steps, validated every {meta['eval_every']} steps on held-out {meta['train']} "
        f"questions (mean of the fixed mono and cross validation losses), stopped after {meta['patience']} "
        "validations without a new best. The rules (`xlir_bench/training/length.py`) were fixed before the first "
        "run; the evaluation suite is not used.",
        "",
        "| arm | seed | steps | best step | best validation loss | monolingual batch share | steps/s (wall) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        share = r.get("monolingual_batch_share")
        rate = r["steps"] / r["train_seconds"] if r.get("train_seconds") else None
        lines.append(
            f"| {Arm(r['strategy'], r['freeze_embeddings']).label} | {r['seed']} | {r['steps']} | {r['best_step']} | "
            f"{r['best_validation_loss']:.4f} | {'' if share is None else f'{share:.3f}'} | "
            f"{'' if rate is None else f'{rate:.3f}'} |"
        )
    arms = decision["arms"]
    if arms:
        steps = sorted({step for a in arms.values() for step, _ in a["curve"]})
        lines += ["", "Validation loss, mean over seeds, at the steps every seed of the arm reached:", "",
                  "| step | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]  # fmt: skip
        for step in steps:
            cells = [dict(a["curve"]).get(step) for a in arms.values()]
            lines.append(f"| {step} | " + " | ".join("" if c is None else f"{c:.4f}" for c in cells) + " |")
    lines += ["", "## Decision", ""]
    if "length" in decision:
        lines.append(
            f"- **Length: {decision['length']} steps** (the latest of the frozen strategies' best steps: "
            + ", ".join(f"{a['strategy']} {a['best_step']}" for a in arms.values() if a["freeze_embeddings"])
            + ")."
        )
        if decision["unconverged"]:
            lines.append(f"- Not converged within {meta['max_steps']} steps: {', '.join(decision['unconverged'])}.")
    else:
        lines.append("- Length: not decided yet (every frozen strategy needs a run).")
    emb = decision.get("embeddings")
    if emb:
        gains = ", ".join(f"{g:+.4f}" for g in emb["gain_per_seed"])
        lines.append(
            f"- **Token embeddings: {emb['decision']}** (hybrid, best validation loss frozen minus trained, per seed: "
            f"{gains}; mean {emb['mean_gain']:+.4f}; the rule asks every seed > 0 and a mean > {EMBEDDING_MARGIN})."
        )
    return "\n".join(lines) + "\n"
