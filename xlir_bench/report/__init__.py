"""One Report over many results, rendered as a terminal table, Markdown, CSV, LaTeX or JSON.

A report is a list of flat records, one per (model, suite, setting): the headline measures, plus the bias
measures on multilingual records.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from tabulate import tabulate

from ..evaluate import SETTINGS
from ..metrics import MEASURES

BIAS_COLUMNS = ("rank_distance", "lang_pref@1")
FORMATS = ("table", "markdown", "csv", "latex", "json")


TEXT_COLUMNS = ("model", "set", "training", "suite", "setting")


def training_label(training: dict) -> str:
    """What a fine-tuned model was trained with, short: ``hybrid a=0.5, mlqa-r, 60 steps, seed 0``."""
    alpha = f" a={training.get('alpha')}" if training.get("strategy") == "hybrid" else ""
    steps, seed = training.get("steps"), training.get("seed")
    kept = f" (kept step {training['best_step']})" if training.get("best_step") else ""
    return f"{training.get('strategy')}{alpha}, {training.get('data')}, {steps} steps{kept}, seed {seed}"


def records_of(result: dict) -> list[dict]:
    rows = []
    for setting in SETTINGS:
        block = result["settings"].get(setting)
        if not block:
            continue
        row = {"model": result["model"]["name"], "suite": result["suite"]["name"], "setting": setting}
        if result.get("_reference"):
            row["set"] = "reference"
        training = (result["model"].get("metadata") or {}).get("training")
        if isinstance(training, dict):
            row["training"] = training_label(training)
        row.update({name: block["metrics"].get(name) for name in MEASURES})
        if setting == "multilingual" and "bias" in block:
            row.update({name: block["bias"].get(name) for name in BIAS_COLUMNS})
        rows.append(row)
    return rows


@dataclass
class Report:
    records: list[dict]

    @classmethod
    def from_results(
        cls, results: list[dict], suite: str | None = None, setting: str | None = None, model: str | None = None
    ) -> Report:
        rows = [r for res in results for r in records_of(res)]
        rows = [
            r
            for r in rows
            if (suite is None or r["suite"] == suite)
            and (setting is None or r["setting"] == setting)
            and (model is None or r["model"] == model)
        ]
        rows.sort(key=lambda r: (r["suite"], SETTINGS.index(r["setting"]), -(r.get("mAP") or 0.0), r["model"]))
        return cls(rows)

    @property
    def columns(self) -> list[str]:
        optional = [c for c in ("set", "training") if any(c in r for r in self.records)]
        cols = ["model", *optional, "suite", "setting", *MEASURES]
        if any(r["setting"] == "multilingual" for r in self.records):
            cols += list(BIAS_COLUMNS)
        return cols

    def rows(self, digits: int = 4) -> list[list[str]]:
        return [[_fmt(r.get(c), c, digits) for c in self.columns] for r in self.records]

    def render(self, fmt: str) -> str:
        if fmt == "json":
            return json.dumps(self.records, indent=1, ensure_ascii=False, allow_nan=False)
        if fmt == "csv":
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(self.columns)
            writer.writerows([["" if r.get(c) is None else r.get(c) for c in self.columns] for r in self.records])
            return out.getvalue()
        if fmt == "markdown":  # a "|" in a label would end its cell
            rows = [[cell.replace("|", "\\|") for cell in row] for row in self.rows()]
            return tabulate(rows, headers=self.columns, tablefmt="github", disable_numparse=True)
        if fmt == "latex":
            return tabulate(self.rows(), headers=self.columns, tablefmt="latex_booktabs", disable_numparse=True)
        raise ValueError(fmt)

    def rich_table(self, title: str | None = None):
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=title)
        for col in self.columns:
            table.add_column(col, justify="left" if col in TEXT_COLUMNS else "right")
        for row in self.rows():  # labels such as e5-small[dtype=int8] are text, not rich markup
            table.add_row(*(escape(cell) for cell in row))
        return table


def _fmt(value, column: str, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}" if column == "rank_distance" else f"{value:.{digits}f}"
    return str(value)
