"""The ``xlir-bench`` command line: a thin click layer over suites, plugins, the runner and reports."""

from __future__ import annotations

import math
import os
import sys
import traceback
from functools import partial

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__, plugins, provenance, results, suites
from .engine.pools import SETTINGS
from .errors import XlirError
from .progress import Progress
from .report import FORMATS, Report

# Piped output (files, CI logs) gets wide tables instead of rich's 80-column default.
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
out = Console(width=None if sys.stdout.isatty() else 160)


class FiniteFloat(click.ParamType):
    """A float that is finite and inside [low, high] (``low_open``: strictly above low). click's FloatRange lets
    ``nan`` through, since every comparison with nan is false."""

    name = "float"

    def __init__(self, low: float, high: float = float("inf"), low_open: bool = False) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        low_ok = number > self.low if self.low_open else number >= self.low
        if not math.isfinite(number) or not low_ok or number > self.high:
            bound = f"{'>' if self.low_open else '>='} {self.low:g}" + (
                f" and <= {self.high:g}" if math.isfinite(self.high) else ""
            )
            self.fail(f"{value!r} is not a finite number {bound}", param, ctx)
        return number


UNIT_INTERVAL = FiniteFloat(0.0, 1.0)
LEARNING_RATE = FiniteFloat(0.0, 1.0, low_open=True)
SEED = click.IntRange(0, 2**32 - 1)


class WholeSummaries(click.Group):
    """A group whose --help shows each command's whole first sentence, wrapped, never cut off with '...'."""

    def format_commands(self, ctx, formatter) -> None:
        rows = [(name, cmd.get_short_help_str(limit=10_000)) for name, cmd in sorted(self.commands.items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=WholeSummaries, context_settings={"max_content_width": 120})
@click.version_option(__version__, prog_name="xlir-bench")
def cli() -> None:
    """Benchmark encoders on cross-lingual and multilingual retrieval with exact metrics."""


@cli.command("models")
def models_cmd() -> None:
    """List model plugins found through the xlir_bench.models entry points."""
    table = Table(title="model plugins (entry-point group xlir_bench.models)")
    for col in ("model", "provided by", "entry point", "status"):
        table.add_column(col)
    infos = plugins.discover(check=True)
    from .models.trained import status as trained_status

    for info in infos:
        status = "[green]ok[/]" if info.error is None else f"[red]broken: {escape(info.error)}[/]"
        weights = trained_status(info.name, info.target) if info.error is None else None
        if weights is not None:
            colour = "yellow" if weights.startswith("needs training") else "green"
            status = f"[{colour}]{escape(weights)}[/]"
        if info.shadows:
            status += f"\n[yellow]also registered (not used): {escape('; '.join(info.shadows))}[/]"
        table.add_row(escape(info.name), escape(info.distribution), escape(info.target), status)
    out.print(table)
    if any(info.shadows for info in infos):
        err.print("[yellow]note:[/] some names are registered by several packages; xlir-bench's built-ins win, "
                  "otherwise the first on sys.path", highlight=False)  # fmt: skip
    if not infos:
        err.print("no model plugins installed; `pip install -e .` registers the built-in ones")


@cli.command("suites")
@click.option(
    "--data-dir", type=click.Path(file_okay=False), help="Folder laid out like shared/data (else XLIR_BENCH_DATA)."
)
def suites_cmd(data_dir: str | None) -> None:
    """List suites, their languages and sizes (counted from the data when it is available), and MIRACL's sizes."""
    table = Table(title="suites")
    for col in ("suite", "languages", "questions", "queries", "candidates", "license"):
        table.add_column(col)
    for name, suite in suites.SUITES.items():
        try:
            data = suite.load(data_dir)
            groups = len({q.group_id for q in data.queries})
            sizes = (str(groups), str(len(data.queries)), str(len(data.docs)))
        except XlirError as exc:
            sizes = ("?", "?", f"data unavailable: {exc}")
        table.add_row(name, f"{len(suite.languages)}: {' '.join(suite.languages)}", *sizes, suite.license)
    m = suites.miracl
    total = sum(m.PUBLISHED_PASSAGES.values())
    table.add_row(
        "miracl", f"18: {' '.join(m.LANGUAGES)}", "-", f"{sum(m.PUBLISHED_DEV_QUERIES.values()):,}", f"{total:,}",
        m.LICENSE,
    )  # fmt: skip
    out.print(table)
    sizes = Table(
        title="MIRACL v1.0 dev per language (--suite miracl:<lang,...>): passages and disk for float32 vectors"
    )
    for col in ("language", "dev queries", "passages", "GB at d=384", "GB at d=768"):
        sizes.add_column(col, justify="right")
    for lang in m.LANGUAGES:
        sizes.add_row(
            lang, str(m.PUBLISHED_DEV_QUERIES[lang]), f"{m.PUBLISHED_PASSAGES[lang]:,}",
            f"{m.vector_gigabytes(lang, 384):.1f}", f"{m.vector_gigabytes(lang, 768):.1f}",
        )  # fmt: skip
    sizes.add_row("all", f"{sum(m.PUBLISHED_DEV_QUERIES.values()):,}", f"{total:,}",
                  f"{total * 384 * 4 / 1e9:.1f}", f"{total * 768 * 4 / 1e9:.1f}")  # fmt: skip
    out.print(sizes)
    out.print("--shard-dtype float16 halves the disk; sizes are the published ones (MIRACL paper, Table 1).")


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=False,
    )


@cli.command("run")
@click.option(
    "--model", "models", multiple=True, required=True, help="Model plugin name (repeatable); see `xlir-bench models`."
)
@click.option(
    "--suite",
    "suite_names",
    multiple=True,
    default=("all",),
    show_default=True,
    help="xquad-r, mlqa-r, all (= both), miracl or miracl:<lang,...> (repeatable).",
)
@click.option(
    "--setting",
    "settings",
    multiple=True,
    type=click.Choice(SETTINGS),
    help="Only these settings (default: all three).",
)
@click.option(
    "--results-dir", help="Where results go (else XLIR_BENCH_RESULTS, else ~/.local/share/xlir-bench/results)."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Folder laid out like shared/data (else XLIR_BENCH_DATA, else download).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1), help="Encoder batch size.")
@click.option(
    "--model-arg",
    "model_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option passed to the model plugin (repeatable).",
)
@click.option(
    "--save-run", is_flag=True, help="Also write TREC runs (top --run-depth per query) and qrels per setting."
)
@click.option(
    "--run-depth",
    default=100,
    show_default=True,
    type=click.IntRange(1),
    help="Depth of saved runs (1000 on XQuAD-R cross-lingual is ~9 GB).",
)
@click.option(
    "--seed", default=0, show_default=True, type=SEED, help="Seed for any randomness in plugins (numpy, torch)."
)
@click.option("--no-cache", is_flag=True, help="Encode everything afresh; read and write no cached embeddings.")
@click.option(
    "--shard-size",
    type=click.IntRange(1),
    help="MIRACL: passages per embedding shard (default 100,000); memory is bounded by it, whatever the corpus.",
)
@click.option(
    "--shard-dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="MIRACL: how corpus vectors are stored (float16 halves the disk; scores are exact for the stored vectors).",
)
@click.option("--measure", "measure_names", multiple=True, metavar="NAME",
              help="Also an ir-measures measure (P@5, ERR@20...) from the saved runs; implies --save-run.")  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run_cmd(
    models,
    suite_names,
    settings,
    results_dir,
    data_dir,
    device,
    batch_size,
    model_args,
    save_run,
    run_depth,
    seed,
    no_cache,
    shard_size,
    shard_dtype,
    measure_names,
    quiet,
) -> None:
    """Evaluate models on suites and write one result JSON per (model, suite).

    Under torchrun (MIRACL) every rank encodes and scores its share of the corpus shards; rank 0 writes the result.
    """
    from .distributed import current as current_world
    from .runner import evaluate, save_runs

    root = results.results_dir(results_dir)
    names = suites.resolve(suite_names)
    if measure_names:
        from . import measures

        measures.parse(measure_names)  # a bad name is found before any compute
        save_run = True
    options = plugins.parse_model_args(model_args)
    resolved_device = provenance.resolve_device(device)
    world = current_world(resolved_device)
    resolved_device = world.bind_device(resolved_device)
    main_rank = world.is_main
    if main_rank:
        results.ensure_writable(root)
    _seed_everything(seed)
    for model_name in models:  # a typo in the second --model is found before the first model's run
        plugins.find_entry_point(model_name)
    loaded = {name: suites.load(name, data_dir) for name in names}  # data problems surface before any model work
    written = []
    with _progress(quiet or not main_rank) as progress:
        overall = progress.add_task("all runs (model x suite)", total=len(models) * len(names)) if len(
            models) * len(names) > 1 else None  # fmt: skip
        for model_name in models:
            model = plugins.load_model(model_name, device=resolved_device, options=options)
            plugins.check_metadata(model)
            chosen = model.metadata.get("precision")
            if main_rank and not quiet and isinstance(chosen, dict):
                err.print(f"{escape(model.label)}: {escape(str(model.metadata.get('dtype')))} "
                          f"({escape(str(chosen.get('reason')))})", highlight=False)  # fmt: skip
            if model.info.shadows and main_rank:
                err.print(f"[yellow]warning:[/] model {escape(repr(model.info.name))} is also registered by "
                          f"{escape('; '.join(model.info.shadows))}; using {escape(model.info.distribution)}",
                          highlight=False)  # fmt: skip
            if main_rank:
                for suite_name in names:
                    results.check_target(results.result_path(root, model.label, suite_name))
            for suite_name in names:
                result, outcome = evaluate(
                    model, loaded[suite_name], device=resolved_device, batch_size=batch_size,
                    settings=tuple(settings) or None, run_depth=run_depth if save_run else None, seed=seed,
                    progress=progress, use_cache=not no_cache, shard_size=shard_size, shard_dtype=shard_dtype,
                    world=world,
                )  # fmt: skip
                if result is None:
                    continue
                path, notes = results.write_result(root, result)
                written.append(result)
                for note in result.get("warnings", []):
                    progress.console.print(f"[yellow]warning:[/] {escape(note)}", highlight=False)
                for note in notes:
                    progress.console.print(f"note: {escape(note)}", highlight=False)
                progress.console.print(f"wrote {escape(str(path))}", highlight=False)
                if save_run:
                    for p in save_runs(root, model, suite_name, outcome):
                        progress.console.print(f"wrote {p}")
                if overall is not None:
                    progress.update(overall, advance=1)
    if main_rank:
        extra = _measure_columns(measure_names, written, root, None)
        out.print(Report.from_results(written, extra=extra).rich_table(title="this run"))


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def _training_device_options(command):
    """--device and --precision, shared by train and experiment."""
    command = click.option(
        "--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
        help="auto: bf16 autocast on a GPU with bf16, fp32 on CPU.",
    )(command)  # fmt: skip
    return click.option(
        "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (torchrun: one GPU per rank)."
    )(command)


ALPHA_SCHEDULE_HELP = (
    "hybrid: alpha fixed, or moving linearly from 0 to 1 (rising: cross-lingual batches early) or 1 to 0."
)


@cli.command("train")
@click.option("--base", required=True, help="e5-small, xlmr, labse, me5-small, me5-base or hf:<id or folder>.")
@click.option(
    "--strategy", type=click.Choice(["mono", "cross", "hybrid"]), required=True,
    help="Batches of one language each (mono), of pairs in two different languages (cross), or a mix (hybrid).",
)  # fmt: skip
@click.option("--alpha", default=0.5, show_default=True, type=UNIT_INTERVAL, help="Share of mono batches (hybrid).")
@click.option(
    "--alpha-schedule", type=click.Choice(["constant", "rising", "falling"]), default="constant", show_default=True,
    help=ALPHA_SCHEDULE_HELP,
)  # fmt: skip
@click.option("--train-data", required=True, help="A suite (xquad-r, mlqa-r) or an ir_datasets template with {lang}.")
@click.option("--langs", help="Comma-separated training languages (default: all of the data's).")
@click.option(
    "--batch-size", default=32, show_default=True, type=click.IntRange(2), help="Pairs per batch (all ranks)."
)
@click.option("--max-steps", default=200, show_default=True, type=click.IntRange(1), help="Optimizer steps at most.")
@click.option("--lr", default=3e-5, show_default=True, type=LEARNING_RATE, help="AdamW learning rate (> 0).")
@click.option(
    "--max-length", default=64, show_default=True, type=click.IntRange(8), help="Tokens per text (truncated)."
)
@click.option("--hard-negatives", is_flag=True, help="Add one hard negative per pair (a sibling sentence).")
@click.option("--freeze-embeddings", is_flag=True, help="Keep the token embedding matrix fixed (much faster on CPU).")
@click.option("--eval-every", default=25, show_default=True, type=click.IntRange(1), help="Steps between validations.")
@click.option("--patience", default=4, show_default=True, type=click.IntRange(1), help="Validations without gain.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Random seed (0 to 2**32-1).")
@click.option("--name", help="Model name (default <strategy>-<base>); it becomes a --model name.")
@_training_device_options
@click.option("--data-dir", type=click.Path(file_okay=False), help="Suite data folder (else XLIR_BENCH_DATA).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(base, strategy, alpha, alpha_schedule, train_data, langs, batch_size, max_steps, lr, max_length,
              hard_negatives, freeze_embeddings, eval_every, patience, seed, name, device, precision, data_dir,
              quiet) -> None:  # fmt: skip
    """Fine-tune a dual encoder with mono, cross-lingual or hybrid batches (arXiv 2408.10536)."""
    from .training import bases, data
    from .training.trainer import TrainConfig, Trainer, models_dir

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
        batch_size=batch_size,
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
        options += [
            click.option(
                "--alpha", default=0.5, show_default=True, type=UNIT_INTERVAL, help="Share of mono batches (hybrid)."
            ),
            click.option(
                "--alpha-schedule",
                type=click.Choice(["constant", "rising", "falling"]),
                default="constant",
                show_default=True,
                help=ALPHA_SCHEDULE_HELP,
            ),
        ]
    options += [
        click.option(
            "--max-length", default=64, show_default=True, type=click.IntRange(8), help="Tokens per text (truncated)."
        ),
        click.option("--hard-negatives", is_flag=True, help="Add one hard negative per pair (a sibling sentence)."),
        click.option(
            "--freeze-embeddings", is_flag=True, help="Keep the token embedding matrix fixed (much faster on CPU)."
        ),
        click.option(
            "--allow-overlap", is_flag=True, help="Run even when training texts occur in the evaluation suite."
        ),
        _training_device_options,
        click.option(
            "--results-dir", help="Where results go (else XLIR_BENCH_RESULTS, else ~/.local/share/xlir-bench/results)."
        ),
        click.option(
            "--data-dir",
            type=click.Path(file_okay=False),
            help="Folder laid out like shared/data (else XLIR_BENCH_DATA).",
        ),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _experiment_kwargs(options: dict, progress) -> dict:
    """run_domain_shift's keyword arguments from the shared options."""
    return {
        "base": options["base"], "train": options["train_suite"], "evaluate": options["eval_suite"],
        "seeds": options["seeds"], "max_steps": options["max_steps"], "batch_size": options["batch_size"],
        "max_length": options["max_length"], "hard_negatives": options["hard_negatives"],
        "freeze_embeddings": options["freeze_embeddings"], "allow_overlap": options["allow_overlap"],
        "data_dir": options["data_dir"], "device": provenance.resolve_device(options["device"]),
        "precision": options["precision"], "results_root": results.results_dir(options["results_dir"]),
        "progress": progress, "command": provenance.command_line(),
    }  # fmt: skip


@experiment_group.command("domain-shift")
@_experiment_options
def domain_shift_cmd(**options) -> None:
    """Train mono / cross / hybrid on one suite, evaluate zero-shot on the other, summarise over seeds."""
    from .training.experiment import run_domain_shift

    with _progress(options["quiet"]) as progress:
        paths = run_domain_shift(
            **_experiment_kwargs(options, progress), alpha=options["alpha"], alpha_schedule=options["alpha_schedule"]
        )
    for path in paths:
        err.print(f"wrote {path}", highlight=False)
    out.print(paths[1].read_text())


@experiment_group.command("alpha-sweep")
@partial(_experiment_options, alpha=False)
def alpha_sweep_cmd(**options) -> None:
    """The domain-shift experiment for alpha 1, 0.75, 0.5, 0.25, 0 and alpha rising or falling during training,
    seed-major and resumable; compares each with fixed alpha 0.5 (question-level and across-seed tests, Holm)."""
    from .training.sweep import run_alpha_sweep

    with _progress(options["quiet"]) as progress:
        paths = run_alpha_sweep(**_experiment_kwargs(options, progress))
    for path in paths:
        err.print(f"wrote {path}", highlight=False)
    out.print(paths[1].read_text())


@cli.group("data", cls=WholeSummaries)
def data_group() -> None:
    """Fetch, copy or verify the evaluation data (every file's md5 is pinned)."""


_DATA_SUITES = click.Choice(["all", "xquad-r", "mlqa-r", "miracl"])


@data_group.command("download")
@click.option("--suite", "suite_names", multiple=True, type=_DATA_SUITES, default=("all",), show_default=True,
              help="Which suites (repeatable); miracl means its 18 languages' dev topics and qrels.")  # fmt: skip
@click.option("--from", "source", type=click.Path(file_okay=False, exists=True),
              help="Copy from this folder (same layout, e.g. shared/data) instead of downloading.")  # fmt: skip
@click.option("--to", "target", type=click.Path(file_okay=False),
              help="Where to (default: the cache's data folder, used when XLIR_BENCH_DATA is not set).")  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress bar.")
def data_download(suite_names, source, target, quiet) -> None:
    """Put the evaluation data where xlir-bench finds it without XLIR_BENCH_DATA, verified file by file."""
    from pathlib import Path

    from .suites import datafiles

    folder = Path(target) if target else datafiles.default_target()
    files = datafiles.pinned(suite_names)
    with _progress(quiet) as progress:
        task = progress.add_task("data", total=len(files))
        done = datafiles.fetch_all(
            folder, suite_names, Path(source) if source else None,
            lambda path: progress.update(task, advance=1, description=f"data: {path}"),
        )  # fmt: skip
    counts = {s: sum(f.status == s for f in done) for s in ("ok", "copied", "downloaded")}
    out.print(f"{folder}: {len(done)} files verified ({counts['ok']} already there, {counts['copied']} copied, "
              f"{counts['downloaded']} downloaded)", highlight=False)  # fmt: skip


@data_group.command("verify")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--suite", "suite_names", multiple=True, type=_DATA_SUITES, default=("all",), show_default=True,
    help="Which suites to check (repeatable).",
)  # fmt: skip
def data_verify(folder, suite_names) -> None:
    """Check a data folder against the pinned md5s (exit 2 if any file is missing or differs)."""
    from pathlib import Path

    from .suites import datafiles

    found = datafiles.verify(Path(folder), suite_names)
    bad = [f for f in found if not f.good]
    if not bad:
        out.print(f"{folder}: all {len(found)} files intact (md5 as pinned)", highlight=False)
        return
    table = Table(title=f"{folder}: {len(found) - len(bad)} of {len(found)} files intact")
    for col in ("file", "status", "md5"):
        table.add_column(col)
    for f in bad:
        table.add_row(f.path, f"[red]{f.status}[/]", f.md5)
    out.print(table)
    if bad:
        kinds = ", ".join(f"{sum(f.status == k for f in bad)} {k}" for k in ("missing", "mismatch") if any(
            f.status == k for f in bad))  # fmt: skip
        raise XlirError(f"{folder} is not a complete, intact copy ({kinds}); `xlir-bench data download` fetches them")


@cli.group("cache", cls=WholeSummaries)
def cache_group() -> None:
    """Inspect or clear the embedding cache (XLIR_BENCH_CACHE, default ~/.cache/xlir-bench)."""


@cache_group.command("info")
def cache_info() -> None:
    """Size of the embedding cache, per model identity."""
    from . import cache

    table = Table(title=f"vector store: {cache.store_root()}")
    for col in ("model", "revision", "vectors", "damaged shards", "MiB", "folder"):
        table.add_column(col)
    found = cache.entries()
    for e in found:
        table.add_row(escape(e.model + (" (old cache)" if e.legacy else "")), escape(e.revision), str(e.vectors),
                      str(e.bad_shards),
                      f"{e.bytes / 2**20:.1f}", e.folder.name)  # fmt: skip
    out.print(table)
    out.print(f"total: {sum(e.bytes for e in found) / 2**20:.1f} MiB in {len(found)} model folder(s)")


@cache_group.command("clear")
@click.option("--model", help="Only this model's vectors (default: everything).")
@click.option("--broken", is_flag=True, help="Only folders whose identity file is missing or unreadable.")
def cache_clear(model: str | None, broken: bool) -> None:
    """Delete cached embeddings."""
    from . import cache

    removed = cache.clear(model=model, broken=broken)
    out.print(f"removed {removed} model folder(s) from {cache.store_root()}")


@cli.command("leaderboard")
@click.option("--results-dir", help="Your results (else XLIR_BENCH_RESULTS, else ~/.local/share/xlir-bench/results).")
@click.option(
    "--reference", is_flag=True,
    help="Also show the project's reference results (results/ of the checkout, or XLIR_BENCH_REFERENCE), marked.",
)  # fmt: skip
@click.option("--suite", help="Only this suite (xquad-r, mlqa-r, miracl or miracl:<lang,...>).")
@click.option("--setting", type=click.Choice(SETTINGS), help="Only this setting.")
@click.option("--model", help="Only this model (or configuration of several seeds).")
@click.option("--by", type=click.Choice(["language", "pair"]),
              help="language: a row per query language; pair: the cross-lingual X -> Y mAP matrix.")  # fmt: skip
@click.option("--per-seed", is_flag=True, help="One row per seed instead of mean ± sample std over seeds.")
@click.option("--sort", "sort_by", default="mAP", show_default=True,
              help="Order rows within each suite and setting by this measure (best first).")  # fmt: skip
@click.option("--measure", "measure_names", multiple=True, metavar="NAME",
              help="Also any ir-measures measure (P@5, Judged@10, ERR@20...): from runs saved with --save-run, "
                   "shown with the run depth (repeatable).")  # fmt: skip
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
    help="table (terminal), markdown, csv, latex (booktabs) or json.",
)  # fmt: skip
def leaderboard_cmd(results_dir, reference, suite, setting, model, by, per_seed, sort_by, measure_names, fmt) -> None:
    """Show results as one table (terminal, Markdown, CSV, LaTeX or JSON)."""
    suite = suites.resolve([suite])[0] if suite else None
    mine = results.results_dir(results_dir)
    ref = results.reference_dir()
    loaded = _load_with_reference(mine, reference)
    for warning in loaded.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    from .metrics import MEASURES
    from .report import BIAS_COLUMNS

    if sort_by not in (*MEASURES, *BIAS_COLUMNS):
        raise XlirError(f"--sort {sort_by!r}: use one of {', '.join((*MEASURES, *BIAS_COLUMNS))}")
    extra = _measure_columns(measure_names, loaded.results, mine, by)
    report = Report.from_results(
        loaded.results, suite=suite, setting=setting, model=model, by=by, per_seed=per_seed, sort=sort_by,
        extra=extra,
    )  # fmt: skip
    if fmt == "table":
        if not report.records:
            hint = " (--reference shows the project's reference results)" if not reference and ref else ""
            err.print(f"no results to show in {escape(str(mine))}{hint}", highlight=False)
        else:
            out.print(report.rich_table(title="xlir-bench leaderboard"))
    else:
        click.echo(report.render(fmt))


@cli.command("report")
@click.option("--results-dir", help="Your results (else XLIR_BENCH_RESULTS, else ~/.local/share/xlir-bench/results).")
@click.option("--reference", is_flag=True, help="Also include the project's reference results.")
@click.option("--suite", "suite_names", multiple=True, help="Only these suites (repeatable).")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Folder for index.html, report.md, plots/.")
@click.option("--title", default="xlir-bench report", show_default=True, help="Page title.")
def report_cmd(results_dir, reference, suite_names, out_dir, title) -> None:
    """Write a self-contained HTML page and a Markdown report: leaderboard, comparisons and plots."""
    from pathlib import Path

    from .report.html import build

    loaded = _load_with_reference(results.results_dir(results_dir), reference)
    for warning in loaded.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    wanted = set(suites.resolve(list(suite_names))) if suite_names else None
    docs = [d for d in loaded.results if wanted is None or d["suite"]["name"] in wanted]
    notes = build(docs, Path(out_dir), title=title)
    for note in notes:
        err.print(f"note: {escape(note)}", highlight=False)
    out.print(f"wrote {escape(str(Path(out_dir) / 'index.html'))} and report.md", highlight=False)


@cli.command("compare")
@click.argument("models", nargs=-1, required=True)
@click.option("--suite", required=True, help="The suite both results are on (xquad-r, mlqa-r, miracl:...).")
@click.option("--setting", type=click.Choice(SETTINGS), default="multilingual", show_default=True,
              help="Which setting's per-query values to pair.")  # fmt: skip
@click.option("--metric", type=click.Choice(["mAP", "AP"]), default="mAP", show_default=True,
              help="The per-query measure (results store per-query AP).")  # fmt: skip
@click.option("--results-dir", help="Your results (else XLIR_BENCH_RESULTS, else ~/.local/share/xlir-bench/results).")
@click.option("--reference", is_flag=True, help="Also look in the project's reference results.")
@click.option("--resamples", default=10000, show_default=True, type=click.IntRange(100, 1_000_000),
              help="Sign flips and bootstrap resamples.")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the resampling.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table",
              show_default=True, help="Output format.")  # fmt: skip
def compare_cmd(models, suite, setting, metric, results_dir, reference, resamples, seed, fmt) -> None:
    """Paired, question-level significance of differences between models (every pair, Holm-corrected)."""
    import json as json_module

    from tabulate import tabulate

    from .compare import compare

    suite = suites.resolve([suite])[0]
    loaded = _load_with_reference(results.results_dir(results_dir), reference, quiet_missing=True)
    available: dict[str, dict] = {}
    for doc in loaded.results:
        if doc["suite"]["name"] == suite:
            available.setdefault(doc["model"]["name"], doc)  # your result wins over a reference one of one label

    def seeds_of(name: str) -> list[dict]:  # a configuration: the results named <name>-s<seed>
        import re

        return [doc for label, doc in sorted(available.items()) if re.fullmatch(rf"{re.escape(name)}-s\d+", label)]

    unknown = [m for m in models if m not in available and not seeds_of(m)]
    if unknown:
        have = ", ".join(sorted(available)) or "none"
        hint = "" if reference else " (--reference also searches the project's reference results)"
        raise XlirError(f"no {suite} result for {', '.join(map(repr, unknown))}; results on {suite}: {have}{hint}")
    if len(set(models)) < 2:
        raise XlirError(
            "compare needs at least two different models, e.g. xlir-bench compare e5-small bm25 --suite ..."
        )
    groups = [(m, [available[m]] if m in available else seeds_of(m)) for m in dict.fromkeys(models)]
    rows = compare(groups, setting, resamples=resamples, seed=seed)
    if fmt == "json":
        click.echo(json_module.dumps([r.as_dict() for r in rows], indent=1, allow_nan=False))
        return
    header = ["A", "B", "mAP A", "mAP B", "A - B", "95% CI", "p", "p (Holm)", "effect size", "clusters", "seeds",
              "p (seeds: sign-flip / t)"]  # fmt: skip
    body = [
        [r.a, r.b, f"{r.mean_a:.4f}", f"{r.mean_b:.4f}", f"{r.difference:+.4f}",
         f"[{r.ci95[0]:+.4f}, {r.ci95[1]:+.4f}]", f"{r.p_value:.4f}", f"{r.p_holm:.4f}", f"{r.effect_size:+.2f}",
         f"{r.units:,}", f"{r.seeds[0]} / {r.seeds[1]}", _seed_ps(r)]
        for r in rows
    ]  # fmt: skip
    unit = "question (a question and its translations)" if suite in ("xquad-r", "mlqa-r") else "query"
    note = (
        f"{suite} {setting}, per-query AP paired over {rows[0].queries:,} values; unit: {unit}; "
        f"{resamples:,} sign flips and bootstrap resamples, seed {seed}; Holm over {len(rows)} comparison(s)."
    )
    if fmt == "markdown":
        click.echo(tabulate(body, headers=header, tablefmt="github", disable_numparse=True) + "\n\n" + note)
        return
    table = Table(title=f"compare on {suite} / {setting}")
    for col in header:
        table.add_column(col, justify="left" if col in ("A", "B") else "right")
    for row in body:
        table.add_row(*(escape(cell) for cell in row))
    out.print(table)
    out.print(note, highlight=False)


def _seed_ps(row) -> str:
    if row.seed_p is None:
        return ""
    return f"{row.seed_p:.4f} / " + ("n/a" if row.seed_t_p is None else f"{row.seed_t_p:.4f}")


def _load_with_reference(mine, reference: bool, quiet_missing: bool = False) -> results.Loaded:
    """The user's results, plus (``reference``) the project's reference results marked as such. A missing user
    folder is only worth a warning when nothing else is shown."""
    loaded = results.load_results(mine) if mine.is_dir() or not (reference or quiet_missing) else results.Loaded([], [])
    ref = results.reference_dir()
    if reference and ref is not None and ref.resolve() != mine.resolve():
        extra = results.load_results(ref)
        for doc in extra.results:
            doc["_reference"] = True
        loaded = results.Loaded(loaded.results + extra.results, loaded.warnings + extra.warnings)
    elif reference and ref is None:
        err.print("note: no reference results here (a source checkout has them in results/; or set "
                  "XLIR_BENCH_REFERENCE)", highlight=False)  # fmt: skip
    return loaded


def _measure_columns(names, docs: list[dict], runs_root, by) -> dict | None:
    """ir-measures values from saved runs for --measure; missing runs are one summary line."""
    if not names:
        return None
    from . import measures

    parsed = measures.parse(names)
    if by is not None:
        raise XlirError("--measure works on whole settings; leave out --by")
    values, notes = measures.extra_columns(docs, parsed, runs_root)
    if notes:
        err.print(f"note: {len(notes)} (model, suite, setting) without a saved run, e.g. {escape(notes[0])}",
                  highlight=False)  # fmt: skip
    exact = [str(m) for m in parsed if str(m) in measures.EXACT]
    if exact:
        err.print(f"note: {', '.join(exact)} are exact over the full pool: the columns "
                  f"{', '.join(measures.EXACT[m] for m in exact)}", highlight=False)  # fmt: skip
    return values


def main() -> None:
    """Entry point: every user-facing problem is one line on stderr and exit status 2."""
    try:
        cli.main(standalone_mode=False)
    except XlirError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.UsageError as exc:  # one line, like every other user error; --help has the rest
        command = exc.ctx.command_path if exc.ctx is not None else "xlir-bench"
        err.print(f"[red]error:[/] {escape(exc.format_message())} (see `{command} --help`)", highlight=False,
                  soft_wrap=True)  # fmt: skip
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted; results already written are intact")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a bug: one line by default, the traceback on request
        if os.environ.get("XLIR_BENCH_DEBUG"):
            traceback.print_exc()
        else:
            err.print(
                f"[red]error:[/] internal error {type(exc).__name__}: {exc} (set XLIR_BENCH_DEBUG=1 for the traceback)",
                highlight=False,
                soft_wrap=True,
            )
        sys.exit(1)


if __name__ == "__main__":
    main()
