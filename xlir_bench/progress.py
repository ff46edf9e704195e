"""Progress bars that also leave a log when nobody is watching.

rich draws its bars only on a terminal: written to a file or a pipe (``nohup``, a batch scheduler, CI) a run shows
nothing until it ends, and an alpha sweep runs for hours. :class:`Progress` is rich's, plus plain lines in that
case: a task logs when it starts, at every tenth of its total, and when it is done; a task without a total (a
streamed MIRACL corpus) logs at most once per ``interval`` seconds.
"""

from __future__ import annotations

import time

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

SPEED_WINDOW = 300.0  # seconds of history behind the rate and the time remaining (rich's default, 30 s, lets the ETA
# of a suite swing between 9 and 51 minutes as batches of long and short texts alternate)
MIN_RATE = 0.1  # below this a rate reads "0.0/s" (whole runs, a few a minute): the elapsed time says more


class RateColumn(ProgressColumn):
    """Items per second over the last :data:`SPEED_WINDOW` seconds (texts while encoding, pairs while scoring)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed or speed < MIN_RATE:
            return Text("", style="progress.data.speed")
        return Text(f"{speed:,.0f}/s" if speed >= 10 else f"{speed:.1f}/s", style="progress.data.speed")


def bars(console=None, disable: bool = False) -> Progress:
    """The harness's progress display: what, bar, done/total, rate, elapsed, remaining. Descriptions are plain text,
    not rich markup: a label such as ``e5-small[dtype=int8]`` would otherwise lose its ``[dtype=int8]``."""
    return Progress(
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(), console=console, disable=disable, transient=False, speed_estimate_period=SPEED_WINDOW,
    )  # fmt: skip


class Progress(RichProgress):
    def __init__(self, *columns, interval: float = 60.0, clock=time.monotonic, **kwargs) -> None:
        super().__init__(*columns, **kwargs)
        self.interval = interval
        self.clock = clock
        self._logs = not self.disable and not self.console.is_terminal
        self._last: dict[TaskID, tuple[int, float]] = {}  # task -> (tenth logged last, when)

    def stop(self) -> None:
        """Stop. A log or pipe has had its plain lines, each task's last one included: rich's closing render of the
        bars would repeat them, after the lines that followed (``wrote ...``), and without any task it is a blank
        line just above a one-line error. So only a terminal gets it."""
        if self.console.is_terminal or self.disable:
            super().stop()
            return
        self.live.transient = True
        self.live.stop()

    def add_task(self, description: str, *args, **kwargs) -> TaskID:
        task_id = super().add_task(description, *args, **kwargs)
        if self._logs:
            self._log(task_id, force=True)
        return task_id

    def update(self, task_id: TaskID, *args, **kwargs) -> None:
        super().update(task_id, *args, **kwargs)
        if self._logs:
            self._log(task_id)

    def _log(self, task_id: TaskID, force: bool = False) -> None:
        task = self._tasks[task_id]
        now = self.clock()
        tenth = int(10 * task.completed / task.total) if task.total else -1
        last_tenth, last_time = self._last.get(task_id, (None, now))
        if not force and (tenth == last_tenth if task.total else now - last_time < self.interval):
            return
        self._last[task_id] = (tenth, now)
        # a few whole units advanced by fractions (runs of a model x suite grid): "0.4/4", not "0/4 (10%)"
        fraction = task.total is not None and task.total < 100 and task.completed != int(task.completed)
        count = f"{task.completed:,.1f}" if fraction else f"{task.completed:,.0f}"
        done = count + (f"/{task.total:,.0f} ({100 * task.completed / task.total:.0f}%)" if task.total else "")
        elapsed = f", {task.elapsed:,.0f} s" if task.elapsed else ""
        speed = task.finished_speed or task.speed
        elapsed += f", {speed:,.1f}/s" if speed and speed >= MIN_RATE else ""
        self.console.print(f"{time.strftime('%H:%M:%S')} {escape(task.description)}: {done}{elapsed}",
                           highlight=False, soft_wrap=True)  # fmt: skip
