"""Pictures of results (matplotlib, headless): the questions this tool answers are easier seen than read.

* :func:`pair_heatmap`: cross-lingual mAP from query language X (rows) to pool language Y (columns) of one model;
* :func:`language_bars`: per query language, mAP in the three settings, one model;
* :func:`rank_distance_plot`: per model, the distribution of per-query rank distance of the parallel answers
  (the language-bias picture; results from before per-query distances were stored show per-language means);
* :func:`top1_split`: per model, where the top-ranked candidate falls: relevant or not x same language or not;
* :func:`mono_vs_multi`: monolingual against multilingual mAP, one point per model and seed, the mean per
  configuration marked (the domain-shift experiment's picture).

Each function draws from result documents or summary rows only (no arithmetic beyond means of given values) and
writes the formats asked for (PNG and SVG by default).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import XlirError

FORMATS = ("png", "svg")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise XlirError("plots need matplotlib: pip install 'xlir-bench[plots]'") from None
    matplotlib.use("Agg")  # headless: no display, no window
    import matplotlib.pyplot as plt

    return plt


def _save(fig, stem: Path, formats=FORMATS) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.parent / f"{stem.name}.{fmt}"  # not with_suffix: "...-a0.75" would lose ".75" to ".png"
        fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
        paths.append(path)
    fig.clear()
    _pyplot().close(fig)
    return paths


def _setting(result: dict, setting: str) -> dict:
    block = result["settings"].get(setting)
    if not block:
        raise XlirError(f"{result['model']['name']!r} has no {setting} results on {result['suite']['name']}")
    return block


def pair_heatmap(result: dict, stem: Path, formats=FORMATS) -> list[Path]:
    pairs = _setting(result, "cross-lingual").get("per_pair") or {}
    langs = sorted({p.split("-", 1)[0] for p in pairs} | {p.split("-", 1)[1] for p in pairs})
    matrix = np.full((len(langs), len(langs)), np.nan)
    for pair, values in pairs.items():
        x, y = pair.split("-", 1)
        matrix[langs.index(x), langs.index(y)] = values["mAP"]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1 + 0.55 * len(langs), 0.8 + 0.5 * len(langs)))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(langs)), langs)
    ax.set_xlabel("pool (passage) language Y")
    ax.set_ylabel("query language X")
    for i in range(len(langs)):
        for j in range(len(langs)):
            if not np.isnan(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] < 0.5 else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, label="mAP")
    ax.set_title(f"{result['model']['name']} on {result['suite']['name']}\ncross-lingual mAP, query X -> pool Y")
    return _save(fig, stem, formats)


def language_bars(result: dict, stem: Path, formats=FORMATS) -> list[Path]:
    series: dict[str, dict[str, float]] = {}
    for setting in ("monolingual", "multilingual"):
        block = result["settings"].get(setting) or {}
        series[setting] = {x: v["mAP"] for x, v in (block.get("per_language") or {}).items()}
    cross: dict[str, list[float]] = {}
    for pair, values in ((result["settings"].get("cross-lingual") or {}).get("per_pair") or {}).items():
        cross.setdefault(pair.split("-", 1)[0], []).append(values["mAP"])
    series["cross-lingual (mean over Y)"] = {x: float(np.mean(v)) for x, v in cross.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        raise XlirError(f"{result['model']['name']!r} has no per-language results to plot")
    langs = sorted({x for values in series.values() for x in values})
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(langs), 3.2))
    width = 0.8 / len(series)
    for k, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(langs)) + k * width, [values.get(x, np.nan) for x in langs], width, label=name)
    ax.set_xticks(np.arange(len(langs)) + width * (len(series) - 1) / 2, langs)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mAP")
    ax.set_xlabel("query language")
    ax.legend(fontsize=8, ncols=len(series), loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax.set_title(f"{result['model']['name']} on {result['suite']['name']}: mAP per query language")
    return _save(fig, stem, formats)


def rank_distance_plot(results: list[dict], stem: Path, formats=FORMATS) -> list[Path]:
    """One box per configuration (its seeds pooled: they are replicates) of the rank distance of parallel answers,
    per query when every result has per-query values, else per query language for all (one kind per picture)."""
    from . import configurations

    per_query = all(((r.get("per_query") or {}).get("rank_distance") or {}).get("multilingual") for r in results)
    groups: dict[str, list[float]] = {}
    for name, members in configurations(results).items():
        for result in members:
            if per_query:
                values = [v for v in result["per_query"]["rank_distance"]["multilingual"] if v is not None]
            else:
                languages = (_setting(result, "multilingual").get("per_language") or {}).values()
                values = [v["rank_distance"] for v in languages if v.get("rank_distance") is not None]
            if values:
                groups.setdefault(name, []).extend(values)
    if not groups:
        raise XlirError("no rank distances to plot (the results have no multilingual setting)")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2 + 0.9 * min(len(groups), 24), 3.6))
    ax.boxplot(list(groups.values()), showfliers=False)
    ax.set_xticks(range(1, len(groups) + 1), list(groups), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("rank distance of parallel answers")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylim(bottom=0)  # a distance is never negative: no axis spent below 0
    unit = "per query" if per_query else "per query language"
    ax.set_title(f"{results[0]['suite']['name']}: language bias (lower is better; {unit}; seeds pooled)")
    fig.tight_layout()
    return _save(fig, stem, formats)


def top1_split(results: list[dict], stem: Path, formats=FORMATS) -> list[Path]:
    """Where the top-ranked candidate falls, one bar per configuration (the mean share over its seeds), the legend
    beside the bars so that it never covers the labels."""
    from ..metrics.bias import TOP1_CELLS
    from . import configurations

    groups: dict[str, list[list[float]]] = {}
    for name, members in configurations(results).items():
        for result in members:
            top1 = (_setting(result, "multilingual").get("bias") or {}).get("top1")
            if top1:
                groups.setdefault(name, []).append([top1.get(cell, 0.0) for cell in TOP1_CELLS])
    if not groups:
        raise XlirError("no top-1 split to plot (the results have no multilingual bias block)")
    labels, shares = list(groups), [np.mean(v, axis=0) for v in groups.values()]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4 + 0.8 * min(len(labels), 24), 3.8))
    bottom = np.zeros(len(labels))
    for k, cell in enumerate(TOP1_CELLS):
        values = np.array([s[k] for s in shares])
        ax.bar(labels, values, bottom=bottom, label=cell.replace("_", ", ") + " language")
        bottom += values
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of queries")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{results[0]['suite']['name']}: the top-ranked candidate (multilingual pool; seeds averaged)")
    fig.tight_layout()
    return _save(fig, stem, formats)


def mono_vs_multi(rows: list[dict], stem: Path, title: str, formats=FORMATS) -> list[Path]:
    """``rows``: dicts with ``config``, ``seed``, ``monolingual`` and ``multilingual`` mAP."""
    if not rows:
        raise XlirError("no models to plot")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4))
    for config in dict.fromkeys(r["config"] for r in rows):
        points = [(r["monolingual"], r["multilingual"]) for r in rows if r["config"] == config]
        xs, ys = zip(*points)
        dots = ax.scatter(xs, ys, alpha=0.45, s=22)
        ax.scatter([np.mean(xs)], [np.mean(ys)], marker="X", s=90, color=dots.get_facecolor()[0], label=config,
                   edgecolors="black")  # fmt: skip
    ax.set_xlabel("monolingual mAP")
    ax.set_ylabel("multilingual mAP")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, stem, formats)
