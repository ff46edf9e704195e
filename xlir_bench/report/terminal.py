"""The terminal rendering of a Report: a table that fits the width it is given, with no number ever cut.

What the field's tables do at a glance: the model, then the measures that matter most, nothing repeated. Columns
whose value is the same on every row (a filtered suite or setting) move into the title; model labels longer than
the width allows get short keys (M1, M2, ...) with a legend under the table; the measures come in order of
importance (mAP, then the bias measures, then the rest) for as long as they fit, and the caption names those left
out (``--format markdown`` or a wider terminal shows them all).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import TEXT_COLUMNS, Report, constant_text_columns

PRIORITY = ("mAP", "rank_distance", "lang_pref@1", "seeds", "R@1", "R@10", "nDCG@10", "MRR", "R@100")
BORDER = 3  # a rich column's padding and rule
LABEL_MIN = 12  # labels longer than this get a key (M1, M2, ...) when the table must narrow
CORE = 4  # the first measures by PRIORITY that a narrow table makes room for (by dropping text, keying labels)
TRAINING_MAX = 36  # the "training" text column wraps beyond this


@dataclass
class Fitted:
    columns: list[str]
    rows: list[list[str]]  # display cells of ``columns``; best values wrapped in \0B ... \0E
    title: str
    legend: list[str]
    left_out: list[str]


def fit(report: Report, width: int, title: str | None = None) -> Fitted:
    """Choose the columns of ``report`` that fit ``width`` characters and the cells to show in them."""
    cells = report.cells(bold=lambda t: f"\0B{t}\0E")
    columns = list(report.columns)
    table = {c: [row[i] for row in cells] for i, c in enumerate(columns)}
    constant = constant_text_columns(columns, cells, model_too=True)
    title_parts = ([title] if title else []) + [table[c][0] for c in constant if table[c][0]]
    kept = [c for c in columns if c not in constant]
    text = [c for c in kept if c in TEXT_COLUMNS]
    numeric = sorted((c for c in kept if c not in TEXT_COLUMNS), key=_priority)
    widths = {c: max(len(_plain(v)) for v in [c, *table[c]]) + BORDER for c in kept}
    if "training" in widths:
        widths["training"] = min(widths["training"], TRAINING_MAX + BORDER)
    budget, core = width - 1, sum(widths[c] for c in numeric[:CORE])
    labels, legend, dropped = list(table.get("model", [])), [], []

    def used() -> int:
        return sum(widths[c] for c in text) + core

    for optional in ("training", "set"):  # the first to go when the core measures do not fit; the legend keeps them
        if optional in text and used() > budget:
            text.remove(optional)
            dropped.append(optional)
    if "set" in dropped and len(set(labels)) < len(labels):  # the set told apart rows of one label: keep them apart
        labels = _apart(labels, table["set"])
        widths["model"] = max(len(v) for v in ["model", *labels]) + BORDER
    if "model" in text and used() > budget:
        labels, keys = _keys(labels, max(LABEL_MIN, budget - (used() - widths["model"]) - BORDER))
        legend += [f"{key} = {label}" for key, label in keys]
        widths["model"] = max(len(v) for v in ["model", *labels]) + BORDER
    for column in dropped:
        legend += _legend_of(column, labels, table[column])
    shown = by_priority(numeric, widths, budget - sum(widths[c] for c in text))
    left_out = [c for c in numeric if c not in shown]
    final = text + shown
    rows = [[labels[r] if c == "model" else table[c][r] for c in final] for r in range(len(cells))]
    return Fitted(final, rows, " · ".join(title_parts), legend, left_out)


def by_priority(ordered: list[str], widths: dict[str, int], budget: int, keep: tuple[str, ...] = ()) -> list[str]:
    """The columns of ``ordered`` (most important first) that fit ``budget`` characters, each taken while it still
    fits; those in ``keep``, and the first, always. The leaderboard and ``compare`` both choose this way."""
    chosen: list[str] = []
    total = 0
    for column in ordered:
        if total + widths[column] <= budget or column in keep or not chosen:
            chosen.append(column)
            total += widths[column]
    return chosen


def rich_table(report: Report, width: int, title: str | None = None):
    """A rich Table (and its caption) for ``width`` columns."""
    from rich.markup import escape
    from rich.table import Table

    fitted = fit(report, width, title)
    caption = []
    if fitted.left_out:
        caption.append(f"not shown at this width: {', '.join(fitted.left_out)} (--format markdown shows every column)")
    caption += fitted.legend
    table = Table(title=escape(fitted.title) or None, caption=escape("\n".join(caption)) or None,
                  caption_justify="left")  # fmt: skip
    for col in fitted.columns:
        is_text = col in TEXT_COLUMNS
        table.add_column(col, justify="left" if is_text else "right", overflow="fold" if is_text else "ignore",
                         no_wrap=not is_text)  # fmt: skip
    for row in fitted.rows:
        table.add_row(*(escape(cell).replace("\0B", "[bold]").replace("\0E", "[/bold]") for cell in row))
    return table


def _priority(column: str) -> tuple[int, str]:
    return (PRIORITY.index(column) if column in PRIORITY else len(PRIORITY), column)


def _plain(cell: str) -> str:
    return cell.replace("\0B", "").replace("\0E", "")


def _keys(labels: list[str], longest: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Short keys for labels longer than ``longest`` (shorter ones stay), in order of first appearance."""
    keys: dict[str, str] = {}
    for label in labels:
        if len(label) > longest and label not in keys:
            keys[label] = f"M{len(keys) + 1}"
    return [keys.get(label, label) for label in labels], [(k, label) for label, k in keys.items()]


def _apart(labels: list[str], sets: list[str]) -> list[str]:
    """Labels that occur more than once (your result and the reference one of the same model), with their set."""
    repeated = {label for label in labels if labels.count(label) > 1}
    return [f"{label} ({kind})" if label in repeated and kind else label for label, kind in zip(labels, sets)]


def _legend_of(column: str, labels: list[str], values: list[str]) -> list[str]:
    """What a dropped text column said, one line per distinct value with the models that have it."""
    by_value: dict[str, list[str]] = {}
    for label, value in zip(labels, values):
        if value and label not in by_value.setdefault(value, []):
            by_value[value].append(label)
    return [f"{column} {value}: {', '.join(models)}" for value, models in by_value.items()]
