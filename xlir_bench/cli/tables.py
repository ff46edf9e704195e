"""`leaderboard`, `compare` and `report`: results as tables, paired tests and a page."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from .. import results, suites
from ..engine.pools import SETTINGS
from ..errors import XlirError
from ..report import FORMATS, Report
from ..report.terminal import by_priority
from . import SEED, _measure_columns, cli, err, out, results_dir_option


@cli.command("leaderboard")
@results_dir_option
@click.option(
    "--reference", is_flag=True,
    help="Also show the project's reference results (results/ of the checkout, or XLIR_BENCH_REFERENCE), marked.",
)  # fmt: skip
@click.option("--suite", help="Only this suite (xquad-r, mlqa-r, miracl or miracl:<lang,...>).")
@click.option("--setting", type=click.Choice(SETTINGS), help="Only this setting.")
@click.option("--model", help="Only this model, with its runs under options (e5-small takes in e5-small[dtype=int8]) "
                                 "and its configurations of several seeds.")  # fmt: skip
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
    loaded = _load_with_reference(mine, reference, per_query=False)  # summaries only: 5x faster
    for warning in loaded.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    from ..metrics import MEASURES
    from ..report import BIAS_COLUMNS

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
            err.print(f"no results to show in {escape(str(mine))}{hint}{escape(_what_is_there(loaded.results))}",
                      highlight=False, soft_wrap=True)  # fmt: skip
        else:
            out.print(report.rich_table(title="xlir-bench leaderboard", width=out.width))
    else:
        click.echo(report.render(fmt))


@cli.command("report")
@results_dir_option
@click.option("--reference", is_flag=True, help="Also include the project's reference results.")
@click.option("--suite", "suite_names", multiple=True, help="Only these suites (repeatable).")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Folder for index.html, report.md, plots/.")
@click.option("--title", default="xlir-bench report", show_default=True, help="Page title.")
def report_cmd(results_dir, reference, suite_names, out_dir, title) -> None:
    """Write a self-contained HTML page and a Markdown report: leaderboard, comparisons and plots."""
    from pathlib import Path

    from ..report.html import build

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
@click.option("--suite", help="The suite to compare on (xquad-r, mlqa-r, miracl:...); default: every suite with "
              "results of all the models, each its own table and Holm family.")  # fmt: skip
@click.option("--setting", type=click.Choice(SETTINGS), default="multilingual", show_default=True,
              help="Which setting's per-query values to pair.")  # fmt: skip
@click.option("--metric", default="AP", show_default=True, metavar="NAME",
              help="The per-query measure: AP (stored in every result), or any ir-measures measure with a cutoff "
                   "(nDCG@10, R@100, P@5), computed per query from the runs saved with --save-run (exact up to "
                   "their depth).")  # fmt: skip
@results_dir_option
@click.option("--reference", is_flag=True, help="Also look in the project's reference results.")
@click.option("--resamples", default=10000, show_default=True, type=click.IntRange(100, 1_000_000),
              help="Sign flips and bootstrap resamples.")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the resampling.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table",
              show_default=True, help="Output format.")  # fmt: skip
def compare_cmd(models, suite, setting, metric, results_dir, reference, resamples, seed, fmt) -> None:
    """Paired, question-level significance of differences between models (every pair, Holm-corrected)."""
    import json as json_module

    from .. import measures
    from ..compare import AP_NAMES, compare, resolve_models

    metric = "AP" if metric in AP_NAMES else str(measures.parse([metric], "--metric")[0])  # a bad name: one line
    mine = results.results_dir(results_dir)
    loaded = _load_with_reference(mine, reference, quiet_missing=True)
    chosen = suites.resolve([suite]) if suite else _suites_to_compare(loaded.results, models, reference)
    compared = [
        (name, compare(resolve_models(loaded.results, name, models, reference), setting, resamples=resamples,
                       seed=seed, metric=metric, runs_root=mine))
        for name in chosen
    ]  # fmt: skip
    if fmt == "json":
        rows = [{"suite": name, "setting": setting, "metric": metric, **r.as_dict()}
                for name, found in compared for r in found]  # fmt: skip
        click.echo(json_module.dumps(rows, indent=1, allow_nan=False))
        return
    for i, (name, found) in enumerate(compared):
        if i:
            click.echo("") if fmt == "markdown" else out.print()
        _show_comparison(name, setting, found, resamples, seed, fmt, several=len(compared) > 1, metric=metric)


def _show_comparison(suite: str, setting: str, rows, resamples: int, seed: int, fmt: str, several: bool,
                     metric: str = "AP") -> None:  # fmt: skip
    """One suite's comparisons as a table (terminal or Markdown) with the note that says how they were made."""
    from tabulate import tabulate

    header = ["A", "B", "mAP A", "mAP B", "A - B", "95% CI", "p", "p (Holm)", "effect size", "clusters", "seeds",
              "p (seeds: sign-flip / t)"]  # fmt: skip
    shown_as = {} if metric == "AP" else {"mAP A": f"{metric} A", "mAP B": f"{metric} B"}
    body = [
        [r.a, r.b, f"{r.mean_a:.4f}", f"{r.mean_b:.4f}", f"{r.difference:+.4f}",
         f"[{r.ci95[0]:+.4f}, {r.ci95[1]:+.4f}]", f"{r.p_value:.4f}", f"{r.p_holm:.4f}", f"{r.effect_size:+.2f}",
         f"{r.units:,}", f"{r.seeds[0]} / {r.seeds[1]}", _seed_ps(r)]
        for r in rows
    ]  # fmt: skip
    unit = "question (a question and its translations)" if suite in ("xquad-r", "mlqa-r") else "query"
    source = "" if metric == "AP" else " (from the saved runs)"
    note = (
        f"{suite} {setting}, per-query {metric}{source} paired over {rows[0].queries:,} values; unit: {unit}; "
        f"{resamples:,} sign flips and bootstrap resamples, seed {seed}; Holm over {len(rows)} comparison(s)"
        f"{' on this suite' if several else ''}."
    )
    if fmt == "markdown":
        headers = [shown_as.get(c, c) for c in header]
        click.echo(tabulate(body, headers=headers, tablefmt="github", disable_numparse=True) + "\n\n" + note)
        return
    shown = _fit_columns(header, body, out.width)
    if len(shown) < len(header):
        left = ", ".join(shown_as.get(c, c) for c in header if c not in shown)
        note += f" Not shown at this width: {left} (--format markdown)."
    table = Table(title=f"compare on {suite} / {setting}")
    for col in shown:  # never cut: a number with an ellipsis is worse than a column left out and named
        table.add_column(shown_as.get(col, col), justify="left" if col in ("A", "B") else "right",
                         no_wrap=col not in ("A", "B"),
                         overflow="fold" if col in ("A", "B") else "ignore")  # fmt: skip
    for row in body:
        table.add_row(*(escape(cell) for cell, col in zip(row, header) if col in shown))
    out.print(table)
    out.print(note, highlight=False)


def _suites_to_compare(docs: list[dict], models, reference: bool) -> list[str]:
    """Every suite with results of all the models named; none is one line saying what there is."""
    from ..compare import shared_suites

    shared = shared_suites(docs, models)
    if shared:
        return shared
    hint = "" if reference else " (--reference also searches the project's reference results)"
    there = _what_is_there(docs).removeprefix("; none match the filters: ") or "no results there"
    raise XlirError(f"no suite has results of all of {', '.join(dict.fromkeys(models))}; {there}{hint}")


def _what_is_there(docs: list[dict]) -> str:
    """When filters left nothing of results that exist: which models and suites there are, to pick from."""
    if not docs:
        return ""
    models = sorted({str(doc["model"]["name"]) for doc in docs})
    suites_there = sorted({str(doc["suite"]["name"]) for doc in docs})
    shown = ", ".join(models[:12]) + (f" and {len(models) - 12} more" if len(models) > 12 else "")
    return f"; none match the filters: models there are {shown}, on {', '.join(suites_there)}"


COMPARE_PRIORITY = ("A", "B", "A - B", "95% CI", "p (Holm)", "mAP A", "mAP B", "p", "seeds", "p (seeds: sign-flip / t)",
                    "effect size", "clusters")  # fmt: skip


def _fit_columns(header: list[str], body: list[list[str]], width: int) -> list[str]:
    """The columns of ``header`` that fit ``width``, by COMPARE_PRIORITY, in their original order."""
    need = {c: max(len(v) for v in [c, *(row[i] for row in body)]) + 3 for i, c in enumerate(header)}
    need["A"], need["B"] = min(need["A"], 24), min(need["B"], 24)  # labels may fold
    need["mAP A"] += need.pop("mAP B")  # the two means come together or not at all
    ordered = [c for c in COMPARE_PRIORITY if c != "mAP B"]
    chosen = by_priority(ordered, need, width - 1, keep=("A", "B", "A - B"))
    chosen += ["mAP B"] if "mAP A" in chosen else []
    return [c for c in header if c in chosen]


def _seed_ps(row) -> str:
    if row.seed_p is None:
        return ""
    return f"{row.seed_p:.4f} / " + ("n/a" if row.seed_t_p is None else f"{row.seed_t_p:.4f}")


def _load_with_reference(mine, reference: bool, quiet_missing: bool = False, per_query: bool = True) -> results.Loaded:
    """The user's results, plus (``reference``) the project's reference results marked as such. A missing user
    folder is only worth a warning when nothing else is shown."""
    read = mine.is_dir() or not (reference or quiet_missing)
    loaded = results.load_results(mine, per_query=per_query) if read else results.Loaded([], [])
    ref = results.reference_dir()
    if reference and ref is not None and ref.resolve() != mine.resolve():
        extra = results.load_results(ref, per_query=per_query)
        for doc in extra.results:
            doc["_reference"] = True
        loaded = results.Loaded(loaded.results + extra.results, loaded.warnings + extra.warnings)
    elif reference and ref is None:
        err.print("note: no reference results here (a source checkout has them in results/; or set "
                  "XLIR_BENCH_REFERENCE)", highlight=False)  # fmt: skip
    return loaded
