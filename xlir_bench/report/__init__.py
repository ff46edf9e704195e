"""One Report over many results, rendered as a terminal table, Markdown, CSV, LaTeX or JSON.

A report is a list of flat records. ``by=None``: one per (model, suite, setting) with the headline measures (plus
the bias measures on multilingual records); ``by="language"``: one per query language as well; ``by="pair"``: the
cross-lingual X -> Y mAP matrix, one record per (model, query language X) with a column per target language Y.
Seeds of one configuration (trained models named ``...-s<seed>``) collapse into one record: the mean, the sample
standard deviation (``<measure> std``) and the number of seeds, unless ``per_seed``. Every format renders the same
records; the only formatting is digits, ``±``, bold for the best value of a column within a (suite, setting,
language) group, and each format's escaping of labels.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass

import numpy as np
from tabulate import tabulate

from ..engine.pools import SETTINGS
from ..metrics import MEASURES

BIAS_COLUMNS = ("rank_distance", "lang_pref@1")
FORMATS = ("table", "markdown", "csv", "latex", "json")
BY = ("language", "pair")
TEXT_COLUMNS = ("model", "set", "training", "suite", "setting", "language", "X")
LOWER_IS_BETTER = ("rank_distance",)
NOT_RANKED = ("lang_pref@1", "seeds")  # no "better" direction: a preference is not a score


def constant_text_columns(columns: list[str], cells: list[list[str]], model_too: bool = False) -> list[str]:
    """Label columns holding one value on every row, e.g. the suite of a filtered table: said once (a title, a
    section heading) rather than on every row, by the terminal and the HTML tables alike. ``model`` too when asked
    (a table with a title) and a row key still tells the rows apart (``--by pair`` of one model: X), not the set or
    training alone, which a narrow table folds into the labels."""
    constant = [c for i, c in enumerate(columns)
                if c in TEXT_COLUMNS and cells and len({row[i] for row in cells}) == 1]  # fmt: skip
    varying = [c for c in columns if c in TEXT_COLUMNS and c not in (*constant, "set", "training")]
    return [c for c in constant if c != "model" or (model_too and varying)]


def training_label(training: dict, with_seed: bool = True) -> str:
    """What a fine-tuned model was trained with, short: ``hybrid a=0.5, mlqa-r, 60 steps, seed 0``."""
    alpha = f" a={training.get('alpha')}" if training.get("strategy") == "hybrid" else ""
    schedule = training.get("alpha_schedule")
    alpha += f" ({schedule})" if schedule and schedule != "constant" else ""
    steps, seed = training.get("steps"), training.get("seed")
    kept = f" (kept step {training['best_step']})" if training.get("best_step") and with_seed else ""
    text = f"{training.get('strategy')}{alpha}, {training.get('data')}"
    return text + (f", {steps} steps{kept}, seed {seed}" if with_seed else "")


def _is_model(record: dict, model: str) -> bool:
    """Whether a row belongs to ``model``: its label, its configuration of several seeds, or the model run with
    options (``e5-small`` takes in ``e5-small[dtype=int8]``, the label ``dtype=auto`` gives on most CPUs)."""
    label = record["model"]
    return label == model or record.get("_config") == model or label.startswith(f"{model}[")


def configuration_name(result: dict) -> str:
    """The configuration a result belongs to: its label without ``-s<seed>`` when it is one seed of a trained
    configuration (seeds are replicates), else its label."""
    name = result["model"]["name"]
    seed = ((result["model"].get("metadata") or {}).get("training") or {}).get("seed")
    match = re.fullmatch(rf"(.+)-s{seed}", name) if seed is not None else None
    return match.group(1) if match else name


def configurations(results: list[dict]) -> dict[str, list[dict]]:
    """Results grouped as the leaderboard groups them, by name: the seeds of one trained configuration together
    (seeds are replicates), the user's results apart from a reference result of the same label, which is marked
    ``(reference)``."""
    groups: dict[tuple[str, bool], list[dict]] = {}
    for r in results:
        groups.setdefault((configuration_name(r), bool(r.get("_reference"))), []).append(r)
    mine = {name for name, reference in groups if not reference}
    return {
        f"{name} (reference)" if reference and name in mine else name: members
        for (name, reference), members in groups.items()
    }


def _identity(result: dict) -> dict:
    """Label, row kind and seed grouping of one result."""
    label = result["model"]["name"]
    row = {"model": label, "suite": result["suite"]["name"]}
    marks = ["reference"] if result.get("_reference") else []
    if not result.get("engine"):  # scored before the one engine (another tie rule): said, never mixed silently
        marks.append("pre-engine")
    corpus = result["suite"].get("corpus") or {}
    unofficial = sorted(lang for lang, c in corpus.items() if isinstance(c, dict) and c.get("official") is False)
    if unofficial:  # a local corpus whose files are not the published ones: never a row that looks official
        marks.append(f"official: false ({', '.join(unofficial)})")
    missing = (result["suite"].get("notes") or {}).get("relevant_not_in_corpus")
    if missing:  # judged passages the corpus lacks count as never retrieved: the row says how many
        marks.append(f"{missing:,} relevant not in corpus")
    if marks:
        row["set"] = ", ".join(marks)
    training = (result["model"].get("metadata") or {}).get("training")
    if isinstance(training, dict):
        row["training"] = training_label(training)
        config = configuration_name(result)
        if config != label:  # one of several seeds of a configuration
            row["_config"], row["_config_training"], row["_seed"] = (
                config,
                training_label(training, False),
                training["seed"],
            )
    return row


def records_of(result: dict, by: str | None = None, extra: dict | None = None) -> list[dict]:
    """``extra``: {(model, suite, setting): {column: value}} of measures computed elsewhere (ir-measures on runs)."""
    base = _identity(result)
    rows = []
    for setting in SETTINGS:
        block = result["settings"].get(setting)
        if not block:
            continue
        if by is None:
            row = {**base, "setting": setting, **{m: block["metrics"].get(m) for m in MEASURES}}
            if setting == "multilingual" and "bias" in block:
                row.update({name: block["bias"].get(name) for name in BIAS_COLUMNS})
            row.update((extra or {}).get((base["model"], base["suite"], setting), {}))
            rows.append(row)
        elif by == "language":
            rows += _language_rows(base, setting, block)
        elif by == "pair" and setting == "cross-lingual":
            rows += _pair_rows(base, block)
    return rows


def _language_rows(base: dict, setting: str, block: dict) -> list[dict]:
    if setting == "cross-lingual":  # per query language X: the mean over its target languages Y
        by_x: dict[str, list[dict]] = {}
        for pair, values in (block.get("per_pair") or {}).items():
            by_x.setdefault(pair.split("-", 1)[0], []).append(values)
        per = {x: {m: _mean([v.get(m) for v in vs]) for m in MEASURES} for x, vs in by_x.items()}
    else:
        per = block.get("per_language") or {}
    rows = []
    for lang in sorted(per):
        values = per[lang]
        row = {**base, "setting": setting, "language": lang, **{m: values.get(m) for m in MEASURES}}
        if setting == "multilingual":
            row.update({name: values.get(name) for name in BIAS_COLUMNS})
        rows.append(row)
    return rows


def _pair_rows(base: dict, block: dict) -> list[dict]:
    matrix: dict[str, dict[str, float]] = {}
    for pair, values in (block.get("per_pair") or {}).items():
        x, _, y = pair.partition("-")
        matrix.setdefault(x, {})[y] = values.get("mAP")
    return [{**base, "setting": "cross-lingual", "X": x, **matrix[x]} for x in sorted(matrix)]


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def collapse_seeds(records: list[dict]) -> list[dict]:
    """Records of several seeds of one configuration become one: mean, sample std (ddof=1) and seed count."""
    groups: dict[tuple, list[dict]] = {}
    order = []
    for r in records:
        if "_config" not in r:
            key = (id(r),)
        else:
            key = (r["_config"], r["suite"], r["setting"], r.get("language"), r.get("X"), r.get("set"))
        if key not in groups:
            order.append(key)
        groups.setdefault(key, []).append(r)
    out = []
    for key in order:
        members = groups[key]
        if len(members) == 1 and "_config" not in members[0]:
            out.append(members[0])
            continue
        first = members[0]
        merged = {k: v for k, v in first.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
        merged["model"] = first["_config"]
        merged["training"] = f"{first['_config_training']}, seeds {', '.join(str(m['_seed']) for m in members)}"
        merged["seeds"] = len(members)
        for column in {k for m in members for k, v in m.items() if isinstance(v, float) and not k.startswith("_")}:
            values = [m.get(column) for m in members if m.get(column) is not None]
            merged[column] = float(np.mean(values)) if values else None
            if len(values) > 1:
                merged[f"{column} std"] = float(np.std(values, ddof=1))
        out.append(merged)
    return out


@dataclass
class Report:
    records: list[dict]
    extra: tuple[str, ...] = ()  # columns of measures computed from saved runs (ir-measures)

    @classmethod
    def from_results(
        cls,
        results: list[dict],
        suite: str | None = None,
        setting: str | None = None,
        model: str | None = None,
        *,
        by: str | None = None,
        per_seed: bool = False,
        sort: str = "mAP",
        extra: dict | None = None,
    ) -> Report:
        rows = [r for res in results for r in records_of(res, by, extra)]
        rows = [
            r
            for r in rows
            if (suite is None or r["suite"] == suite)
            and (setting is None or r["setting"] == setting)
            and (model is None or _is_model(r, model))
        ]
        if not per_seed:
            rows = collapse_seeds(rows)
        sign = 1.0 if sort in LOWER_IS_BETTER else -1.0

        def key(r):
            value = r.get(sort)
            return (
                r["suite"], SETTINGS.index(r["setting"]), r.get("language") or "", r.get("X") or "",
                value is None, sign * (value or 0.0), r["model"],
            )  # fmt: skip

        rows.sort(key=key)
        columns = tuple(dict.fromkeys(c for values in (extra or {}).values() for c in values))
        return cls([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], columns)

    @property
    def columns(self) -> list[str]:
        optional = [c for c in ("set", "training") if any(c in r for r in self.records)]
        group = [c for c in ("language", "X") if any(c in r for r in self.records)]
        if "X" in group:  # the cross-lingual matrix: one column per target language
            targets = sorted({k for r in self.records for k in r
                              if re.fullmatch(r"[a-z]{2,3}", k) and k not in TEXT_COLUMNS})  # fmt: skip
            return ["model", *optional, "suite", "X", *targets]
        cols = ["model", *optional, "suite", "setting", *group, *MEASURES]
        if any(r["setting"] == "multilingual" for r in self.records):
            cols += list(BIAS_COLUMNS)
        cols += [c for c in self.extra if any(c in r for r in self.records)]
        if any("seeds" in r for r in self.records):
            cols.append("seeds")
        return cols

    def best(self) -> set[tuple[int, str]]:
        """(record index, column) of the best value per column within each (suite, setting, language/X) group."""
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(self.records):
            groups.setdefault((r["suite"], r["setting"], r.get("language"), r.get("X")), []).append(i)
        marked = set()
        for members in groups.values():
            if len(members) < 2:
                continue
            for column in self.columns:
                if column in TEXT_COLUMNS or column in NOT_RANKED:
                    continue
                values = [(self.records[i].get(column), i) for i in members]
                values = [(v, i) for v, i in values if isinstance(v, float)]
                if len(values) < 2:
                    continue
                pick = min if column in LOWER_IS_BETTER else max
                top = pick(v for v, _ in values)
                marked |= {(i, column) for v, i in values if v == top}
        return marked

    def cells(self, digits: int = 4, bold=None) -> list[list[str]]:
        """Display strings: values with ``± std`` for collapsed seeds; ``bold(text)`` wraps the best values."""
        best = self.best() if bold else set()
        out = []
        for i, r in enumerate(self.records):
            row = []
            for c in self.columns:
                text = _fmt(r.get(c), c, digits)
                if text and f"{c} std" in r:
                    text += f" ± {_fmt(r[f'{c} std'], c, digits)}"
                row.append(bold(text) if (i, c) in best and text else text)
            out.append(row)
        return out

    def rows(self, digits: int = 4) -> list[list[str]]:
        return self.cells(digits)

    def render(self, fmt: str) -> str:
        if fmt == "json":
            return json.dumps(self.records, indent=1, ensure_ascii=False, allow_nan=False)
        if fmt == "csv":
            stds = {k for r in self.records for k in r if k.endswith(" std")}
            columns = [name for c in self.columns for name in (c, f"{c} std") if name == c or name in stds]
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([["" if r.get(c) is None else r.get(c) for c in columns] for r in self.records])
            return out.getvalue()
        if fmt == "markdown":  # a "|" in a label would end its cell
            rows = [[cell.replace("|", "\\|") for cell in row] for row in self.cells(bold=lambda t: f"**{t}**")]
            return tabulate(rows, headers=self.columns, tablefmt="github", disable_numparse=True)
        if fmt == "latex":
            rows = [[_latex(cell) for cell in row] for row in self.cells(bold=lambda t: f"\0B{t}\0E")]
            rows = [[cell.replace("\0B", "\\textbf{").replace("\0E", "}") for cell in row] for row in rows]
            headers = [_latex(c) for c in self.columns]
            text = tabulate(rows, headers=headers, tablefmt="latex_raw", disable_numparse=True)
            for rule in ("\\toprule", "\\midrule"):  # booktabs rules: top, below the header, then bottom
                text = text.replace("\\hline", rule, 1)
            return text.replace("\\hline", "\\bottomrule")
        raise ValueError(fmt)

    def rich_table(self, title: str | None = None, width: int = 160):
        """The terminal table for ``width`` columns (:mod:`xlir_bench.report.terminal`): numbers are never cut."""
        from .terminal import rich_table

        return rich_table(self, width, title)


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}  # fmt: skip


def _latex(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def _fmt(value, column: str, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}" if column == "rank_distance" else f"{value:.{digits}f}"
    return str(value)
