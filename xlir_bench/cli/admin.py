"""`models`, `suites`, `data` and `cache`: what is installed, what data there is, what is stored."""

from __future__ import annotations

import sys

import click
from rich.markup import escape
from rich.table import Table

from .. import plugins, suites
from ..errors import XlirError
from . import WholeSummaries, _progress, cli, data_dir_option, err, out, quiet_option

MODELS_WIDE = 150  # terminal columns from which `models` shows each plugin's entry point


@cli.command("models")
def models_cmd() -> None:
    """List model plugins found through the xlir_bench.models entry points."""
    table = Table(title="model plugins (entry-point group xlir_bench.models)")
    wide = out.width >= MODELS_WIDE  # narrower, the entry point column would be cut to "xlir_bench.model…"
    for col in ("model", "provided by", *(("entry point",) if wide else ()), "status"):
        table.add_column(col, overflow="fold", no_wrap=col == "model")
    infos = plugins.discover(check=True)
    from ..models.sources import hub_status
    from ..models.trained import status as trained_status

    for info in infos:
        status = "[green]ok[/]" if info.error is None else f"[red]broken: {escape(info.error)}[/]"
        weights = plugins.install_needed(info.factory) if info.error is None else None  # first: without torch,
        if weights is None and info.error is None:  # a trained or cached model cannot run either
            weights = trained_status(info.name, info.target) or hub_status(info.factory)
        if weights is not None:
            colour = "yellow" if weights.startswith("needs") else "green"
            status = f"[{colour}]{escape(weights)}[/]"
        if info.shadows:
            status += f"\n[yellow]also registered (not used): {escape('; '.join(info.shadows))}[/]"
        target = (escape(info.target),) if wide else ()
        table.add_row(escape(info.name), escape(info.distribution), *target, status)
    out.print(table)
    if not wide:
        err.print(f"entry points not shown at this width ({MODELS_WIDE} columns show them)", highlight=False)
    if any(info.shadows for info in infos):
        err.print("[yellow]note:[/] some names are registered by several packages; xlir-bench's built-ins win, "
                  "otherwise the first on sys.path", highlight=False)  # fmt: skip
    if not infos:
        err.print("no model plugins installed; `pip install -e .` registers the built-in ones")


@cli.command("suites")
@data_dir_option
def suites_cmd(data_dir: str | None) -> None:
    """List suites, their languages and sizes (counted from the data when it is available), and MIRACL's sizes."""
    from ..suites.download import local_path

    table = Table(title="suites")
    for col in ("suite", "languages", "questions", "queries", "candidates", "license"):
        table.add_column(col, justify="right" if col in ("questions", "queries", "candidates") else "left")
    notes = []
    for name, suite in suites.SUITES.items():
        sizes = ("?", "?", "?")
        if not all(local_path(f, data_dir).is_file() for f in suite.files()):  # a listing never downloads
            notes.append(f"{name}: not here yet, so not counted (`xlir-bench data download`, or XLIR_BENCH_DATA / "
                         "--data-dir naming a folder that holds it)")  # fmt: skip
        else:
            try:
                data = suite.load(data_dir)
                groups = len({q.group_id for q in data.queries})
                sizes = (f"{groups:,}", f"{len(data.queries):,}", f"{len(data.docs):,}")
            except XlirError as exc:
                notes.append(f"{name}: not counted: {exc}")
        table.add_row(name, f"{len(suite.languages)}: {' '.join(suite.languages)}", *sizes, suite.license)
    m = suites.miracl
    total = sum(m.PUBLISHED_PASSAGES.values())
    table.add_row(
        "miracl", f"18: {' '.join(m.LANGUAGES)}", "-", f"{sum(m.PUBLISHED_DEV_QUERIES.values()):,}", f"{total:,}",
        m.LICENSE,
    )  # fmt: skip
    out.print(table)
    for note in notes:
        out.print(escape(note), highlight=False)
    sizes = Table(
        title="MIRACL v1.0 dev per language (--suite miracl:<lang,...>): passages and disk for float32 vectors"
    )
    for col in ("language", "dev queries", "passages", "GB at d=384", "GB at d=768"):
        sizes.add_column(col, justify="right")
    for lang in m.LANGUAGES:
        sizes.add_row(
            lang, f"{m.PUBLISHED_DEV_QUERIES[lang]:,}", f"{m.PUBLISHED_PASSAGES[lang]:,}",
            f"{m.vector_gigabytes(lang, 384):.1f}", f"{m.vector_gigabytes(lang, 768):.1f}",
        )  # fmt: skip
    sizes.add_row("all", f"{sum(m.PUBLISHED_DEV_QUERIES.values()):,}", f"{total:,}",
                  f"{total * 384 * 4 / 1e9:.1f}", f"{total * 768 * 4 / 1e9:.1f}")  # fmt: skip
    out.print(sizes)
    out.print("--shard-dtype float16 halves the disk; sizes are the published ones (MIRACL paper, Table 1).")


@cli.group("data", cls=WholeSummaries)
def data_group() -> None:
    """Download (or copy from --from) and verify the evaluation data (every file's md5 is pinned)."""


_DATA_SUITES = click.Choice(["all", "xquad-r", "mlqa-r", "miracl"])


@data_group.command("download")
@click.option("--suite", "suite_names", multiple=True, type=_DATA_SUITES, default=("all",), show_default=True,
              help="Which suites (repeatable); miracl means its 18 languages' dev topics and qrels.")  # fmt: skip
@click.option("--from", "source", type=click.Path(file_okay=False, exists=True),
              help="Copy from this folder (same layout, e.g. shared/data) instead of downloading.")  # fmt: skip
@click.option("--to", "target", type=click.Path(file_okay=False),
              help="Where to (default: the cache's data folder, used when XLIR_BENCH_DATA is not set).")  # fmt: skip
@quiet_option
def data_download(suite_names, source, target, quiet) -> None:
    """Put the evaluation data where xlir-bench finds it without XLIR_BENCH_DATA, verified file by file."""
    from pathlib import Path

    from ..suites import datafiles

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

    from ..suites import datafiles

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
    from .. import cache
    from ..report.terminal import by_priority

    found = sorted(cache.entries(), key=lambda e: (e.legacy, e.model, e.folder.name))
    header = ["model", "vectors", "MiB", "damaged", "revision", "folder"]  # by priority: what goes first when narrow
    rows = [
        {"model": e.model + (" (old cache)" if e.legacy else " (in use by a running run)" if e.in_use else ""),
         "vectors": f"{e.vectors:,}", "MiB": f"{e.bytes / 2**20:,.1f}", "damaged": str(e.bad_shards),
         "revision": e.revision.removeprefix("sha256:")[:12], "folder": e.folder.name[:12]}
        for e in found
    ]  # fmt: skip
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) + 3 if rows else len(c) + 3 for c in header}
    widths["model"] = min(widths["model"], 24)  # a long label folds rather than pushing the numbers out
    shown = by_priority(header, widths, out.width - 1, keep=("model",))
    table = Table(title=f"vector store: {cache.store_root()}")
    for col in shown:
        table.add_column(col, justify="right" if col in ("vectors", "MiB", "damaged") else "left",
                         overflow="fold", no_wrap=col != "model")  # fmt: skip
    for row in rows:
        table.add_row(*(escape(row[c]) for c in shown))
    out.print(table)
    left_out = [c for c in header if c not in shown]
    out.print(f"total: {sum(e.bytes for e in found) / 2**20:,.1f} MiB in {len(found)} model folder(s)"
              + (f"; not shown at this width: {', '.join(left_out)}" if left_out else ""), highlight=False)  # fmt: skip
    from ..models.precision import MIN_GAIN, STORED, stored_probes
    from ..suites.download import cache_dir

    probes = stored_probes()  # what dtype=auto decides from on a CPU with bf16 instructions
    for machine, probe in probes.items():
        out.print(escape(f"dtype=auto's bf16 probe: {probe['gain']:.2f}x fp32 (bf16 from {MIN_GAIN}x) on {machine}, "
                         f"{probe.get('probed', '?')}"), highlight=False)  # fmt: skip
    if probes:
        out.print(escape(f"(kept in {cache_dir() / STORED}: delete it to probe again)"), highlight=False)


@cache_group.command("clear")
@click.option("--model", help="Only this model's vectors (default: everything).")
@click.option("--broken", is_flag=True, help="Only folders whose identity file is missing or unreadable.")
@click.option("--yes", is_flag=True, help="Clear everything without asking (for scripts).")
def cache_clear(model: str | None, broken: bool, yes: bool) -> None:
    """Delete cached embeddings (everything asks first: a MIRACL corpus's vectors can be GPU-hours of work)."""
    from .. import cache

    if model is not None:  # a typo would otherwise remove nothing and say "removed 0"
        stored = sorted({e.model for e in cache.entries()})
        if model not in stored:
            raise XlirError(f"no stored vectors of {model!r} in {cache.store_root()}; models there: "
                            f"{', '.join(stored) or 'none'} (`xlir-bench cache info`)")  # fmt: skip
    if model is None and not broken and not yes:
        found = cache.entries()
        if found:
            size = sum(e.bytes for e in found) / 2**20
            what = f"all {len(found)} model folder(s), {size:,.1f} MiB, in {cache.store_root()}"
            if not sys.stdin.isatty():
                raise XlirError(f"cache clear would remove {what}; pass --yes to confirm, or --model NAME / --broken")
            if not click.confirm(f"remove {what}?", default=False, err=True):
                out.print("nothing removed")
                return
    removed, busy = cache.clear(model=model, broken=broken)
    out.print(f"removed {removed} model folder(s) from {cache.store_root()}")
    if busy:
        out.print(f"left {len(busy)} in use by a running run ({', '.join(sorted(set(busy)))}); "
                  "clear them when it has finished")  # fmt: skip
