"""`run`: evaluate models on suites with the one engine and write one result per (model, suite)."""

from __future__ import annotations

import sys

import click
from rich.markup import escape

from .. import plugins, provenance, results, suites
from ..engine.pools import SETTINGS
from ..report import Report
from . import SEED, _measure_columns, _progress, cli, data_dir_option, err, out, quiet_option, results_dir_option


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
@results_dir_option
@data_dir_option
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
    help="Passages per embedding shard, every suite (default 100,000); memory is bounded by it, whatever the corpus.",
)
@click.option(
    "--shard-dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="How corpus vectors are stored (float16 halves the disk; scores are exact for the stored vectors).",
)
@click.option("--measure", "measure_names", multiple=True, metavar="NAME",
              help="Also an ir-measures measure (P@5, ERR@20...) from the saved runs; implies --save-run.")  # fmt: skip
@quiet_option
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

    Under torchrun every rank encodes and scores its share of the corpus shards (on every suite); rank 0 writes the
    result.
    """
    from ..distributed import current as current_world
    from ..runner import evaluate, save_runs

    root = results.results_dir(results_dir)
    names = suites.resolve(suite_names)
    if measure_names:
        from .. import measures

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
    for model_name in models:  # a typo in the second --model, or its missing torch, is found before the first's run
        plugins.check_installed(model_name)
    plugins.check_model_args(models, options)  # and one in an option (dytpe=bf16), which no model would use
    loaded = {name: suites.load(name, data_dir) for name in names}  # data problems surface before any model work
    written, runs_done = [], 0
    with _progress(quiet or not main_rank) as progress:
        overall = None  # added once the first model has loaded: a model that cannot load is then one line alone
        for model_name in models:
            model = plugins.load_model(model_name, device=resolved_device, options=options)
            if overall is None and len(models) * len(names) > 1:
                overall = progress.add_task("all runs (model x suite)", total=len(models) * len(names))
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
                    if save_run:  # a run folder that cannot be written is found before the compute, not after
                        results.ensure_writable(results.runs_folder(root, model.label, suite_name))
            for suite_name in names:
                result, outcome = evaluate(
                    model, loaded[suite_name], device=resolved_device, batch_size=batch_size,
                    settings=tuple(settings) or None, run_depth=run_depth if save_run else None, seed=seed,
                    progress=progress, use_cache=not no_cache, shard_size=shard_size, shard_dtype=shard_dtype,
                    world=world, overall=overall,
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
                if overall is not None:  # whole runs done, whatever the fractions added up to
                    runs_done += 1
                    progress.update(overall, completed=runs_done)
    if main_rank:
        extra = _measure_columns(measure_names, written, root, None)
        out.print(Report.from_results(written, extra=extra).rich_table(title="this run", width=out.width))


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
