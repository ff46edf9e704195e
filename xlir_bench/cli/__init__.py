"""The ``xlir-bench`` command line: a thin click layer over the engine, suites, plugins and reports.

One module per command family (:mod:`.run`; :mod:`.train`: train and experiment; :mod:`.tables`: leaderboard,
compare and report; :mod:`.admin`: models, suites, data and cache); shared options and the entry point live here.
"""

from __future__ import annotations

import math
import os
import sys
import traceback

import click
from rich.console import Console
from rich.markup import escape

from .. import __version__, provenance
from ..errors import XlirError
from ..progress import Progress, bars


# Piped output (files, CI logs) gets wide tables instead of rich's 80-column default.
def _width(stream) -> int | None:
    """The terminal's width; off a terminal, COLUMNS if set (as rich reads it), else 160."""
    return None if stream.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160


err = Console(stderr=True, width=_width(sys.stderr))
out = Console(width=_width(sys.stdout))


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
    provenance.source_revision()  # read now: a long run's results name the code it started with


def results_dir_option(command):
    """--results-dir, declared once for every command that reads or writes results."""
    return click.option(
        "--results-dir", help="Your results folder (else XLIR_BENCH_RESULTS, else ~/.local/share/xlir-bench/results)."
    )(command)


def data_dir_option(command):
    """--data-dir, declared once."""
    return click.option(
        "--data-dir", type=click.Path(file_okay=False), help="Folder laid out like shared/data (else XLIR_BENCH_DATA)."
    )(command)


def quiet_option(command):
    return click.option("--quiet", is_flag=True, help="No progress bars.")(command)


def _progress(quiet: bool) -> Progress:
    return bars(console=err, disable=quiet)


def _measure_columns(names, docs: list[dict], runs_root, by) -> dict | None:
    """ir-measures values from saved runs for --measure; missing runs are one summary line."""
    if not names:
        return None
    from .. import measures

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
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
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
        err.print("interrupted; results already written are intact and finished vectors stay stored: "
                  "the same command resumes")  # fmt: skip
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a bug: one line by default, the traceback on request
        if os.environ.get("XLIR_BENCH_DEBUG"):
            traceback.print_exc()
        else:
            err.print(
                f"[red]error:[/] internal error {type(exc).__name__}: {escape(str(exc))} "
                "(set XLIR_BENCH_DEBUG=1 for the traceback)",
                highlight=False,
                soft_wrap=True,
            )
        sys.exit(1)


from . import admin, run, tables, train  # noqa: E402,F401  (registers the commands)
