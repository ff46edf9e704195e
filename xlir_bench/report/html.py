"""``xlir-bench report``: one self-contained HTML page (and a Markdown twin) with the leaderboard, a comparison
table and the plots, per suite.

Self-contained means no server and no network: styles are inline and images are PNG data URIs, so the page can be
mailed or attached to a paper's supplement. A small inline script records, on load, how many images decoded
(``<body data-images="loaded/total">``), how many script errors happened (``data-errors``) and the page's width
against the window's (``data-width``), which the browser test reads at 800 and 1,400 px. The report is built in a
temporary folder and renamed into place, so a failure leaves the previous report (if any) untouched.
"""

from __future__ import annotations

import base64
import html
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .. import results as results_module
from ..errors import XlirError
from ..fileio import replace_dir
from . import TEXT_COLUMNS, Report, configurations, constant_text_columns, plots
from .terminal import PRIORITY

MAX_MODEL_PLOTS = 4  # per-model pictures (heatmap, bars) for the best configurations by multilingual mAP
MAX_COMPARED = 3

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1440px; padding: 0 1em; color: #222; }
h1, h2, h3 { font-weight: 600; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 12px; margin: .6em 0 1.2em; }
div.table { overflow-x: auto; }  /* a table wider than the window scrolls in its box; the page never does */
th, td { border-bottom: 1px solid #ddd; padding: 3px 5px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; white-space: normal; min-width: 6.5em; }
td.text { max-width: 20em; overflow-wrap: break-word; }  /* labels wrap at spaces and hyphens, never cut */
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; }
figcaption { font-size: 12px; color: #555; } img { max-width: 100%; }
p.note { font-size: 12px; color: #555; } p.narrow { display: none; }
/* narrow windows: the measures of lowest priority (report/terminal.PRIORITY) go first, and a note says which */
@media (max-width: 1440px) { .p3 { display: none; } p.narrow { display: block; } table { font-size: 11px; } }
@media (max-width: 1000px) { .p2 { display: none; } td.text { max-width: 12em; } }
"""

CHECK = """
window.__errors = 0;
window.addEventListener('error', function () { window.__errors += 1; }, true);
(function () {
  var original = console.error;
  console.error = function () { window.__errors += 1; return original.apply(console, arguments); };
})();
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', ok + '/' + images.length);
  document.body.setAttribute('data-errors', String(window.__errors));
  // the page's width against the window's: a table wider than the window would need a scrollbar
  document.body.setAttribute('data-width', document.documentElement.scrollWidth + '/' + window.innerWidth);
  // the widest table against its box: wider means it scrolls sideways inside the page
  var boxes = Array.prototype.slice.call(document.querySelectorAll('div.table'));
  var over = boxes.map(function (b) { return b.scrollWidth - b.clientWidth; });
  document.body.setAttribute('data-table-overflow', String(Math.max.apply(null, over.concat([0]))));
});
"""


def _column_class(column: str) -> str:
    """``text`` for labels; for measures, the priority band that narrow windows hide first (``p3``, then ``p2``)."""
    if column in TEXT_COLUMNS:
        return "text"
    rank = PRIORITY.index(column) if column in PRIORITY else len(PRIORITY)
    return "p3" if rank >= 6 else "p2" if rank >= 4 else ""


def _table(report: Report) -> str:
    """The leaderboard without the columns that hold one value on every row (the suite of its section), so that
    it fits the page; on narrow windows the measures of lowest priority are hidden, and a note names them."""
    cells = report.cells(bold=lambda t: f"\0B{t}\0E")
    constant = constant_text_columns(list(report.columns), cells)
    keep = [i for i, c in enumerate(report.columns) if c not in constant]
    columns = [report.columns[i] for i in keep]
    head = "".join(f'<th class="{_column_class(c)}">{html.escape(c)}</th>' for c in columns)
    rows = []
    for full in cells:
        tds = []
        for column, cell in zip(columns, [full[i] for i in keep]):
            text = html.escape(cell).replace("\0B", "<b>").replace("\0E", "</b>")
            tds.append(f'<td class="{_column_class(column)}">{text}</td>')
        rows.append("<tr>" + "".join(tds) + "</tr>")
    hidden = [c for c in columns if _column_class(c) in ("p2", "p3")]
    note = (f'<p class="note narrow">Narrow window: {", ".join(map(html.escape, hidden))} may be hidden; widen it '
            "(or read report.md) for every measure.</p>") if hidden else ""  # fmt: skip
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>{note}'


COMPARISON_HEADER = ("A", "B", "A - B", "95% CI", "p", "p (Holm)", "effect size", "clusters")


def _comparison_table(rows) -> str:
    body = "".join(
        "<tr>" + "".join(f"<td{' class=text' if k < 2 else ''}>{html.escape(v)}</td>"
                         for k, v in enumerate(_comparison_cells(r))) + "</tr>"
        for r in rows
    )  # fmt: skip
    head = "".join(f"<th{' class=text' if k < 2 else ''}>{h}</th>" for k, h in enumerate(COMPARISON_HEADER))
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _comparison_cells(r) -> list[str]:
    return [r.a, r.b, f"{r.difference:+.4f}", f"[{r.ci95[0]:+.4f}, {r.ci95[1]:+.4f}]", f"{r.p_value:.4f}",
            f"{r.p_holm:.4f}", f"{r.effect_size:+.2f}", f"{r.units:,}"]  # fmt: skip


def _comparison_markdown(rows) -> str:
    from tabulate import tabulate

    body = [[cell.replace("|", "\\|") for cell in _comparison_cells(r)] for r in rows]  # a label's | splits no cell
    return tabulate(body, headers=COMPARISON_HEADER, tablefmt="github", disable_numparse=True)


def _confirmatory_note(top: list[tuple[str, list[dict]]]) -> str:
    """A configuration of the pre-registered confirmatory run, compared here before or after its last seed, is
    said to be so: this table is descriptive, the registered analysis (and its verdict) is the experiment's own."""

    def confirmatory(doc: dict) -> bool:
        return "experiment confirmatory" in str((doc.get("provenance") or {}).get("command"))

    runs = [(name, len(members)) for name, members in top if any(confirmatory(m) for m in members)]
    if not runs:
        return ""
    which = ", ".join(f"{name} ({n} seed{'s' * (n != 1)} in)" for name, n in runs)
    return (f" {which}: of the pre-registered confirmatory run (docs/preregistration.md); this comparison is "
            "descriptive, not its registered analysis, which is in results/experiments/confirmatory-*.md and gives "
            "a verdict only once every registered seed is in.")  # fmt: skip


def _figure(png: Path, caption: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _ranked(results: list[dict]) -> list[tuple[str, list[dict]]]:
    """Configurations, best mean multilingual mAP over their seeds first (none counts as 0)."""

    def score(members: list[dict]) -> float:
        return float(np.mean([(m["settings"].get("multilingual") or {}).get("metrics", {}).get("mAP") or 0.0
                              for m in members]))  # fmt: skip

    return sorted(configurations(results).items(), key=lambda item: -score(item[1]))


def _best_configurations(results: list[dict], k: int) -> list[tuple[str, list[dict]]]:
    """The ``k`` best configurations by mean multilingual mAP, as (name, results of its seeds): seeds are
    replicates, so they are compared together (as `compare` and the leaderboard treat them), and only results of
    the best one's engine, whose tie rule they share."""
    ranked = _ranked(results)
    if not ranked:
        return []
    engine = results_module.engine_of(ranked[0][1][0])
    same = [(n, m) for n, m in ranked if all(results_module.engine_of(x) == engine for x in m)]
    return same[:k]


def _seed_mean(name: str, members: list[dict]) -> dict:
    """What the per-model plots draw for a configuration: its result, or for several seeds one result whose
    per-pair and per-language mAP are the means over the seeds (as the leaderboard's mean), named as such."""
    if len(members) == 1:
        return {**members[0], "model": {**members[0]["model"], "name": name}}
    settings: dict[str, dict] = {}
    for setting in set.intersection(*(set(m["settings"]) for m in members)):
        blocks = [m["settings"][setting] for m in members]
        settings[setting] = {
            part: {key: {"mAP": float(np.mean([b[part][key]["mAP"] for b in blocks]))} for key in sorted(keys)}
            for part in ("per_pair", "per_language")
            if (keys := set.intersection(*(set(b.get(part) or {}) for b in blocks)))
        }
    return {"model": {"name": f"{name} (mean of {len(members)} seeds)"}, "suite": members[0]["suite"],
            "settings": settings}  # fmt: skip


def build(results: list[dict], out: Path, title: str = "xlir-bench report", resamples: int = 10000) -> list[str]:
    """Write ``out/index.html``, ``out/report.md`` and ``out/plots/``; return notes on what was left out."""
    from ..compare import compare

    if not results:
        raise XlirError("no results to report; run `xlir-bench run` first, or pass --reference")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    notes: list[str] = []
    body, markdown = [f"<h1>{html.escape(title)}</h1>"], [f"# {title}", ""]
    try:
        for suite in sorted({r["suite"]["name"] for r in results}):
            on_suite = [r for r in results if r["suite"]["name"] == suite]
            report = Report.from_results(on_suite)
            body += [f"<h2>{html.escape(suite)}</h2>", "<h3>Leaderboard</h3>", _table(report)]
            markdown += [f"## {suite}", "", report.render("markdown"), ""]
            multi = [r for r in on_suite if "multilingual" in r["settings"]]
            top = _best_configurations(multi, MAX_COMPARED)
            if len(top) >= 2:
                try:
                    rows = compare(top, "multilingual", resamples=resamples)
                    said = (f"Paired per-query AP; a question and its translations are one unit; {resamples:,} "
                            f"resamples; Holm over {len(rows)} pairs.{_confirmatory_note(top)}")  # fmt: skip
                    heading = "Comparison (multilingual, best configurations; seeds averaged)"
                    body += [f"<h3>{heading}</h3>", _comparison_table(rows),
                             f'<p class="note">{html.escape(said)}</p>']  # fmt: skip
                    markdown += [f"### {heading}", "", _comparison_markdown(rows), "", said, ""]
                except XlirError as exc:
                    notes.append(f"{suite}: no comparison ({exc})")
            figures = []
            if multi:
                figures.append((plots.rank_distance_plot(multi, work / "plots" / f"{suite}-rank-distance")[0],
                                "rank distance of parallel answers per model"))  # fmt: skip
                figures.append((plots.top1_split(multi, work / "plots" / f"{suite}-top1")[0],
                                "where the top-ranked candidate falls"))  # fmt: skip
            for configuration, members in _ranked(on_suite)[:MAX_MODEL_PLOTS]:
                result = _seed_mean(configuration, members)
                name = result["model"]["name"]
                slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in configuration)
                if "cross-lingual" in result["settings"]:
                    png = plots.pair_heatmap(result, work / "plots" / f"{suite}-{slug}-pairs")[0]
                    figures.append((png, f"{name}: cross-lingual mAP X -> Y"))
                else:
                    notes.append(f"{suite}/{name}: no cross-lingual setting, no X -> Y heatmap")
                png = plots.language_bars(result, work / "plots" / f"{suite}-{slug}-languages")[0]
                figures.append((png, f"{name}: mAP per query language"))
            body += ["<h3>Plots</h3>", *(_figure(png, caption) for png, caption in figures)]
            markdown += ["### Plots", "", *(f"![{c}](plots/{p.name})" for p, c in figures), ""]
        page = (
            f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><script>{CHECK}</script></head><body>{''.join(body)}</body></html>\n"
        )
        (work / "index.html").write_text(page, encoding="utf-8")
        (work / "report.md").write_text("\n".join(markdown) + "\n", encoding="utf-8")
        os.chmod(work, 0o755)  # mkdtemp makes it private; a report is meant to be shared
        _replace_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return notes


def _replace_dir(new: Path, target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise XlirError(f"{target} is a file; pass --out a folder")
    replace_dir(new, target)
