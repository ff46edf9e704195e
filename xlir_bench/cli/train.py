"""`train` and `experiment`: fine-tune dual encoders, and the experiments that compare training strategies."""

from __future__ import annotations

from functools import partial

import click

from .. import provenance, results, suites
from ..errors import XlirError
from . import (
    LEARNING_RATE,
    SEED,
    UNIT_INTERVAL,
    WholeSummaries,
    _progress,
    cli,
    data_dir_option,
    err,
    out,
    quiet_option,
    results_dir_option,
)


def _device_option(command):
    return click.option(
        "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (torchrun: one GPU per rank)."
    )(command)


def _training_device_options(command):
    """--device and --precision, shared by train and experiment."""
    command = click.option(
        "--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
        help="auto: bf16 autocast on a GPU with bf16, fp32 on CPU.",
    )(command)  # fmt: skip
    return _device_option(command)


ALPHA_SCHEDULE_HELP = (
    "hybrid: alpha fixed, or moving linearly from 0 to 1 (rising: cross-lingual batches early) or 1 to 0."
)
ALPHA_DRAW = click.option(
    "--alpha-draw", type=click.Choice(["exact", "coin"]), default="exact", show_default=True,
    help="hybrid: exactly round(alpha x max-steps) monolingual batches in a seeded order, or a coin per batch.",
)  # fmt: skip
ALPHA_OPTIONS = [
    click.option("--alpha", default=0.5, show_default=True, type=UNIT_INTERVAL, help="Share of mono batches (hybrid)."),
    click.option("--alpha-schedule", type=click.Choice(["constant", "rising", "falling"]), default="constant",
                 show_default=True, help=ALPHA_SCHEDULE_HELP),
]  # fmt: skip
TEXT_OPTIONS = [
    click.option("--max-length", default=64, show_default=True, type=click.IntRange(8),
                 help="Tokens per text (truncated)."),
    click.option("--hard-negatives", is_flag=True, help="Add one hard negative per pair (a sibling sentence)."),
    click.option("--freeze-embeddings", is_flag=True,
                 help="Keep the token embedding matrix fixed (much faster on CPU)."),
]  # fmt: skip


def _options(options: list):
    """Several click options as one decorator, in the order listed (the order --help shows)."""

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


@cli.command("train")
@click.option("--base", required=True, help="e5-small, xlmr, labse, me5-small, me5-base or hf:<id or folder>.")
@click.option(
    "--strategy", type=click.Choice(["mono", "cross", "hybrid"]), required=True,
    help="Batches of one language each (mono), of pairs in two different languages (cross), or a mix (hybrid).",
)  # fmt: skip
@_options([*ALPHA_OPTIONS, ALPHA_DRAW])
@click.option("--train-data", required=True, help="A suite (xquad-r, mlqa-r) or an ir_datasets template with {lang}.")
@click.option("--langs", help="Comma-separated training languages (default: all of the data's).")
@click.option(
    "--batch-size", default=32, show_default=True, type=click.IntRange(2), help="Pairs per batch (all ranks)."
)
@click.option("--max-steps", default=200, show_default=True, type=click.IntRange(1), help="Optimizer steps at most.")
@click.option("--lr", default=3e-5, show_default=True, type=LEARNING_RATE, help="AdamW learning rate (> 0).")
@_options(TEXT_OPTIONS)
@click.option("--eval-every", default=25, show_default=True, type=click.IntRange(1), help="Steps between validations.")
@click.option("--patience", default=4, show_default=True, type=click.IntRange(1), help="Validations without gain.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Random seed (0 to 2**32-1).")
@click.option("--name", help="Model name (default <strategy>-<base>); it becomes a --model name.")
@_training_device_options
@data_dir_option
@quiet_option
def train_cmd(base, strategy, alpha, alpha_schedule, alpha_draw, train_data, langs, batch_size, max_steps, lr,
              max_length, hard_negatives, freeze_embeddings, eval_every, patience, seed, name, device, precision,
              data_dir, quiet) -> None:  # fmt: skip
    """Fine-tune a dual encoder with mono, cross-lingual or hybrid batches (arXiv 2408.10536)."""
    from ..models.trained import models_dir
    from ..training import bases, data
    from ..training.trainer import TrainConfig, Trainer

    if train_data in suites.SUITES:
        suite = suites.load(train_data, data_dir)
        parallel = data.from_suite(suite, data.parse_languages(langs, suite.languages))
    elif "{lang}" in train_data:
        languages = data.parse_languages(langs)
        if not languages:
            raise XlirError("an ir_datasets template needs --langs, e.g. --langs en,de,fr")
        parallel = data.from_ir_datasets(train_data, languages)
    else:
        raise XlirError(
            f"unknown --train-data {train_data!r}; use {', '.join(suites.SUITES)} or a template with {{lang}}"
        )
    data.check_strategy(parallel, strategy, alpha)
    chosen = bases.resolve(base)  # after the cheap checks: e5-small converts its weights on first use
    config = TrainConfig(
        base=base, base_path=chosen.path, strategy=strategy, alpha=alpha, alpha_schedule=alpha_schedule,
        alpha_draw=alpha_draw, batch_size=batch_size,
        max_steps=max_steps, lr=lr, max_length=max_length, hard_negatives=hard_negatives,
        freeze_embeddings=freeze_embeddings, query_prefix=chosen.query_prefix, passage_prefix=chosen.passage_prefix,
        seed=seed,
        eval_every=eval_every, patience=patience, checkpoint_every=eval_every, data=train_data,
        languages=parallel.languages, device=provenance.resolve_device(device), precision=precision,
    )  # fmt: skip
    out = models_dir() / results.slug(name or f"{strategy}-{base}")
    with _progress(quiet) as progress:
        card = Trainer(config, parallel, out, progress=progress).train()
    out_text = f"saved {out} ({card['steps']} steps, best validation loss {card['best_validation_loss']:.4f})"
    err.print(out_text, highlight=False)


@cli.group("experiment", cls=WholeSummaries)
def experiment_group() -> None:
    """Experiments that answer research questions end to end."""


def _experiment_options(command, alpha: bool = True):
    """The options of the domain-shift experiment (``alpha=False``: without --alpha and --alpha-schedule, which the
    alpha sweep sets itself)."""
    options = [
        click.option("--base", default="e5-small", show_default=True, help="Base model to fine-tune."),
        *(
            click.option(
                flag, dest, default=default, show_default=True, type=click.Choice(list(suites.SUITES)), help=text
            )
            for flag, dest, default, text in (
                ("--train", "train_suite", "mlqa-r", "Suite the models are trained on."),
                ("--eval", "eval_suite", "xquad-r", "Suite they are evaluated on, zero-shot (the domain shift)."),
            )
        ),  # fmt: skip
        click.option("--seeds", default=1, show_default=True, type=click.IntRange(1), help="Seeds 0..N-1 per model."),
        click.option(
            "--max-steps", default=100, show_default=True, type=click.IntRange(1), help="Optimizer steps at most."
        ),
        click.option("--batch-size", default=32, show_default=True, type=click.IntRange(2), help="Pairs per batch."),
    ]
    if alpha:
        options += ALPHA_OPTIONS
    options.append(ALPHA_DRAW)
    options += [
        *TEXT_OPTIONS,
        click.option(
            "--allow-overlap", is_flag=True, help="Run even when training texts occur in the evaluation suite."
        ),
        _training_device_options,
        results_dir_option,
        data_dir_option,
        quiet_option,
    ]
    return _options(options)(command)


def _experiment_settings(options: dict) -> dict:
    """The domain-shift experiment's own keyword arguments (``_run_and_show`` adds the shared ones)."""
    return {
        "base": options["base"], "train": options["train_suite"], "evaluate": options["eval_suite"],
        "seeds": options["seeds"], "max_steps": options["max_steps"], "batch_size": options["batch_size"],
        "max_length": options["max_length"], "hard_negatives": options["hard_negatives"],
        "freeze_embeddings": options["freeze_embeddings"], "allow_overlap": options["allow_overlap"],
        "alpha_draw": options["alpha_draw"],
    }  # fmt: skip


@experiment_group.command("domain-shift")
@_experiment_options
def domain_shift_cmd(**options) -> None:
    """Train mono / cross / hybrid on one suite, evaluate zero-shot on the other, summarise over seeds."""
    from ..training.experiment import run_domain_shift

    _run_and_show(
        run_domain_shift, options, **_experiment_settings(options), alpha=options["alpha"],
        alpha_schedule=options["alpha_schedule"],
    )  # fmt: skip


@experiment_group.command("alpha-sweep")
@partial(_experiment_options, alpha=False)
def alpha_sweep_cmd(**options) -> None:
    """The domain-shift experiment for alpha 1, 0.75, 0.5, 0.25, 0 and alpha rising or falling during training,
    seed-major and resumable; compares each with fixed alpha 0.5 (question-level and across-seed tests, Holm)."""
    from ..training.sweep import run_alpha_sweep

    _run_and_show(run_alpha_sweep, options, **_experiment_settings(options))


@experiment_group.command("length-study")
@click.option("--base", default="e5-small", show_default=True, help="Base model to fine-tune.")
@click.option("--train", "train_suite", default="mlqa-r", show_default=True, type=click.Choice(list(suites.SUITES)),
              help="Suite the models train and validate on (the evaluation suite is never used).")  # fmt: skip
@click.option("--seeds", default=2, show_default=True, type=click.IntRange(1), help="Seeds 0..N-1 per arm.")
@click.option("--max-steps", default=300, show_default=True, type=click.IntRange(1), help="Optimizer steps at most.")
@click.option("--eval-every", default=20, show_default=True, type=click.IntRange(1), help="Steps between validations.")
@click.option("--patience", default=3, show_default=True, type=click.IntRange(1), help="Validations without gain.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(2), help="Pairs per batch.")
@click.option("--max-length", default=64, show_default=True, type=click.IntRange(8), help="Tokens per text.")
@click.option("--embeddings/--no-embeddings", default=True, show_default=True,
              help="Add the arm that trains the token embeddings (hybrid): freeze them or not.")  # fmt: skip
@_training_device_options
@results_dir_option
@data_dir_option
@quiet_option
def length_study_cmd(**options) -> None:
    """Train each strategy up to --max-steps with its validation curve, pick the training length and whether to
    train the token embeddings (rules fixed in xlir_bench/training/length.py); resumable."""
    from ..training.length import run_length_study

    _run_and_show(
        run_length_study, options, base=options["base"], train=options["train_suite"], seeds=options["seeds"],
        max_steps=options["max_steps"], eval_every=options["eval_every"], patience=options["patience"],
        batch_size=options["batch_size"], max_length=options["max_length"], embeddings=options["embeddings"],
    )  # fmt: skip


def _run_and_show(run, options: dict, **settings) -> None:
    """Run an experiment with the shared options (results, data, device, progress), then show what it wrote."""
    with _progress(options["quiet"]) as progress:
        paths = run(
            data_dir=options["data_dir"], results_root=results.results_dir(options["results_dir"]), progress=progress,
            command=provenance.command_line(), device=provenance.resolve_device(options["device"]),
            precision=options["precision"], **settings,
        )  # fmt: skip
    for path in paths:
        err.print(f"wrote {path}", highlight=False)
    out.print(paths[1].read_text())


@experiment_group.command("base")
@click.option("--base", default="e5-small", show_default=True, help="The experiments' base model.")
@click.option("--eval", "eval_suite", default="xquad-r", show_default=True, type=click.Choice(list(suites.SUITES)),
              help="Suite to evaluate it on.")  # fmt: skip
@_device_option
@results_dir_option
@data_dir_option
@quiet_option
def base_cmd(**options) -> None:
    """Evaluate the base model as the experiments evaluate every model (fp32, their token budget, batch 64) by the
    current engine: how the reference e5-small results are made, and how one scored by an older engine is redone."""
    from ..training.experiment import evaluate_as_experiments_do

    root = results.results_dir(options["results_dir"])
    with _progress(options["quiet"]) as progress:
        result = evaluate_as_experiments_do(
            options["base"], suites.load(options["eval_suite"], options["data_dir"]), root, progress,
            provenance.resolve_device(options["device"]),
        )  # fmt: skip
    err.print(f"wrote {results.result_path(root, result['model']['name'], result['suite']['name'])}", highlight=False)


@experiment_group.command("confirmatory")
@_training_device_options
@results_dir_option
@data_dir_option
@quiet_option
def confirmatory_cmd(**options) -> None:
    """The pre-registered confirmatory run (docs/preregistration.md): no options change what it trains or how it
    is judged; resumable, round by round, the verdict only once every registered seed is in."""
    from ..training.confirm import run_confirmatory

    _run_and_show(run_confirmatory, options)
