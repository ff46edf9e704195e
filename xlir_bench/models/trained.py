"""Models trained by ``xlir-bench train``, as plugins: ``hybrid-xlmr``, ``mono-e5-small``, ... or ``trained:<name>``.

Each looks for its folder under the models directory (``XLIR_BENCH_MODELS``, default
``~/.cache/xlir-bench/trained``) and loads it as a mean-pooling transformers encoder with the prefixes it was
trained with (from its ``card.json``). Before training, the error names the command that trains it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import XlirError
from ..fileio import read_json
from ..suites.download import cache_dir
from .transformers_encoder import MODEL_ARGS, NEURAL, TransformersEncoder, needs

CARD_FIELDS = ("base", "strategy", "alpha", "alpha_schedule", "data", "languages", "seed", "steps",
               "best_validation_loss")  # fmt: skip
NEWER_CARD_FIELDS = ("alpha_draw", "monolingual_batch_share")  # recorded only where the card has them


def trained(name_or_path: str | None = None, **options: Any) -> TransformersEncoder:
    """``--model trained:<name>``: any folder under the models directory."""
    if not name_or_path:
        raise XlirError("the trained plugin needs a name: --model trained:<name> (see the models directory)")
    folder = require_trained(str(name_or_path))
    try:
        card = read_json(folder / "card.json")
    except (OSError, ValueError) as exc:
        raise XlirError(f"{folder / 'card.json'} is unreadable ({exc}); train the model again") from None
    defaults = {"query_prefix": card.get("query_prefix", ""), "passage_prefix": card.get("passage_prefix", "")}
    encoder = TransformersEncoder(str(folder), display_name=str(name_or_path), **{**defaults, **options})
    training = {k: card.get(k) for k in (*CARD_FIELDS, "best_step", "trainer_version")}
    encoder.metadata["training"] = {**training, **{k: card[k] for k in NEWER_CARD_FIELDS if k in card}}
    return encoder


trained.model_args = MODEL_ARGS
needs(*NEURAL)(trained)


def _named(name: str):
    def factory(**options: Any) -> TransformersEncoder:
        options.pop("name_or_path", None)
        return trained(name, **options)

    factory.__doc__ = f"{name}: trained by `xlir-bench train` (see the README)"
    factory.model_args = MODEL_ARGS
    return needs(*NEURAL)(factory)


mono_e5_small, cross_e5_small, hybrid_e5_small = (_named(f"{s}-e5-small") for s in ("mono", "cross", "hybrid"))
mono_xlmr, cross_xlmr, hybrid_xlmr = (_named(f"{s}-xlmr") for s in ("mono", "cross", "hybrid"))


TRAINED_TARGET = "xlir_bench.models.trained:"

# Bases on the model hub that `xlir-bench train --base NAME` starts from: (hub id, query prefix, passage prefix).
HUB_BASES = {
    "xlmr": ("FacebookAI/xlm-roberta-base", "", ""),
    "labse": ("sentence-transformers/LaBSE", "", ""),  # trained with mean pooling over its transformer
    "me5-small": ("intfloat/multilingual-e5-small", "query: ", "passage: "),
    "me5-base": ("intfloat/multilingual-e5-base", "query: ", "passage: "),
}


def models_dir() -> Path:
    env = os.environ.get("XLIR_BENCH_MODELS")
    return Path(env) if env else cache_dir() / "trained"


def require_trained(name: str) -> Path:
    folder = models_dir() / name
    if not (folder / "card.json").is_file():
        raise XlirError(f"model {name!r} is not trained yet (looked in {folder}); train it with: {train_hint(name)}")
    return folder


def train_hint(name: str) -> str:
    """The command that trains a named plugin such as ``hybrid-xlmr``, and what that command needs."""
    strategy, _, base = name.partition("-")
    if not base:
        return "xlir-bench train"
    command = f"xlir-bench train --base {base} --strategy {strategy} --train-data mlqa-r"
    if base in HUB_BASES:
        command += (
            f" (downloads {HUB_BASES[base][0]} once: needs the hub, or use --base hf:/path/to/a/downloaded/model)"
        )
    return command


def training_summary(card: dict) -> str:
    """One line on how a model was trained, for `models` and the leaderboard."""
    alpha = f" alpha={card.get('alpha')}" if card.get("strategy") == "hybrid" else ""
    stop = f", best at step {card['best_step']}" if card.get("best_step") else ""
    return (
        f"{card.get('strategy')}{alpha} on {card.get('data')} ({','.join(card.get('languages') or [])}), "
        f"{card.get('steps')} steps{stop}, seed {card.get('seed')}, base {card.get('base')}"
    )


def status(name: str, target: str) -> str | None:
    """For the trained-model plugins: whether weights exist (and how they were trained) or the command that
    trains them; None for any other plugin."""

    if not target.startswith(TRAINED_TARGET):
        return None
    if name == "trained":
        folders = sorted(p.name for p in models_dir().glob("*/card.json")) if models_dir().is_dir() else []
        return f"{len(folders)} trained model(s) in {models_dir()} (use trained:<name>)"
    try:
        card = read_json(models_dir() / name / "card.json")
    except (OSError, ValueError):
        return f"needs training: {train_hint(name)}"
    return f"trained: {training_summary(card)}"
