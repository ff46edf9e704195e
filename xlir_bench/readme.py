"""README blocks generated from committed results, so that prose about results cannot drift from the numbers.

A block is delimited by ``<!-- generated: KIND NAME -->`` and ``<!-- /generated -->``. Kinds:

* ``experiment STEM``: the table and the generated reading of ``results/experiments/STEM.md`` (what
  ``xlir-bench experiment domain-shift`` wrote), from its first table line to its end.
* ``headline all``: the reference results of every untrained model, one row per (suite, model): mAP in the three
  settings and the two bias measures, best first by multilingual mAP.

``python -m xlir_bench.readme`` rewrites the blocks of README.md and docs/*.md in place (``--figures`` also redraws
README's pictures from the reference results); ``--check`` exits 1 when a block is stale (a test runs the check).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- generated: (\w+) ([^>]+?) -->\n)(.*?)(<!-- /generated -->)", re.S)


def experiment_block(results_root: Path, stem: str, prefix: str = "") -> str:
    """The summary from its first table on; ``prefix`` leads from the page's folder to the project root."""
    path = results_root / "experiments" / f"{stem}.md"
    if not path.is_file():
        return f"(no committed results yet: `{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}`)\n"
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| model")), 0)
    text = "\n".join(lines[start:]).rstrip() + "\n"
    return text.replace(f"]({stem}.png)", f"]({prefix}results/experiments/{stem}.png)")  # links relative to the page


def headline_block(results_root: Path) -> str:
    from . import results
    from .report import Report

    docs = [
        d for d in results.load_results(results_root, per_query=False).results
        if not (d["model"].get("metadata") or {}).get("training")
    ]  # fmt: skip
    report = Report.from_results(docs)
    table: dict[tuple[str, str], dict] = {}
    for r in report.records:
        row = table.setdefault((r["suite"], r["model"]), {})
        row[r["setting"]] = r
    order = sorted(table, key=lambda k: (("xquad-r", "mlqa-r").index(k[0]) if k[0] in ("xquad-r", "mlqa-r") else 9,
                                         -(table[k].get("multilingual", {}).get("mAP") or 0)))  # fmt: skip
    lines = [
        "| suite | model | monolingual mAP | cross-lingual mAP | multilingual mAP | rank distance | lang_pref@1 |",
        "|---|---|---|---|---|---|---|",
    ]

    def get(row, setting, key, digits):
        value = row.get(setting, {}).get(key)
        return "" if value is None else f"{value:.{digits}f}"

    for suite, model in order:
        row = table[(suite, model)]
        lines.append(
            f"| {suite} | {model} | {get(row, 'monolingual', 'mAP', 4)} | {get(row, 'cross-lingual', 'mAP', 4)} | "
            f"{get(row, 'multilingual', 'mAP', 4)} | {get(row, 'multilingual', 'rank_distance', 1)} | "
            f"{get(row, 'multilingual', 'lang_pref@1', 3)} |"
        )
    return "\n".join(lines) + "\n"


def render(text: str, results_root: Path, prefix: str = "") -> str:
    def replace(match: re.Match) -> str:
        kind, name = match.group(2), match.group(3).strip()
        if kind == "experiment":
            body = experiment_block(results_root, name, prefix)
        elif kind == "headline":
            body = headline_block(results_root)
        else:
            raise ValueError(f"unknown generated block kind {kind!r}")
        return match.group(1) + body + match.group(5)

    return BLOCK.sub(replace, text)


def figures(results_root: Path) -> list[Path]:
    """README's pictures, drawn from the reference results (regenerated, not checked byte for byte: PNG bytes
    depend on the matplotlib version)."""
    from . import results
    from .report import plots

    docs = [
        d for d in results.load_results(results_root).results
        if d["suite"]["name"] == "xquad-r" and "multilingual" in d["settings"]
        and not (d["model"].get("metadata") or {}).get("training")
    ]  # fmt: skip
    return plots.top1_split(docs, ROOT / "docs" / "img" / "xquad-r-top1", formats=("png",)) if docs else []


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--figures" in argv:
        figures(ROOT / "results")
    stale = []
    for page in pages():
        current = page.read_text(encoding="utf-8")
        fresh = render(current, ROOT / "results", "../" * (len(page.relative_to(ROOT).parts) - 1))
        if fresh != current:
            stale.append(page.relative_to(ROOT))
            if "--check" not in argv:
                page.write_text(fresh, encoding="utf-8")
    if "--check" in argv and stale:
        names = ", ".join(map(str, stale))
        print(f"stale generated blocks in {names}; run `python -m xlir_bench.readme`", file=sys.stderr)
        return 1
    return 0


def pages() -> list[Path]:
    """README.md and the pages under docs/ it links: every file that may hold generated blocks."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


if __name__ == "__main__":
    raise SystemExit(main())
