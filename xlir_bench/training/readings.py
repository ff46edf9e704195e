"""The domain-shift experiment's readings: the generated sentences and the Markdown summary of its numbers.

Split from :mod:`xlir_bench.training.experiment` (which computes the numbers); nothing here computes a statistic.
"""

from __future__ import annotations

from ..metrics.significance import holm, p_text

STRATEGIES = ("mono", "cross", "hybrid")
COMPARISONS = (("hybrid", "cross"), ("hybrid", "mono"), ("cross", "mono"))
LEVEL = 0.05  # family-wise, Holm-corrected over COMPARISONS
MEASURE_NAMES = {
    "mAP": "multilingual mAP (mean over queries)",
    "mAP_macro_lang": "multilingual mAP (macro over query languages, as in the paper)",
    "rank_distance": "rank distance (lower is better)",
}


def reading(summary: dict, meta: dict) -> list[str]:
    """The experiment's claims, generated from its numbers: orderings with spreads, then each comparison with its
    interval and tests. README quotes this text, so prose and numbers cannot drift apart."""
    table, lines = summary["table"], []
    trained = [s for s in STRATEGIES if s in table]
    for key, label in MEASURE_NAMES.items():
        stats = {s: table[s].get("multilingual", {}).get(key) for s in trained}
        stats = {s: v for s, v in stats.items() if v}
        if len(stats) < 2:
            continue
        order = sorted(stats, key=lambda s: stats[s]["mean"], reverse=key != "rank_distance")
        digits = 1 if key == "rank_distance" else 4
        shown = " > ".join(
            f"{s} {stats[s]['mean']:.{digits}f}" + (f" ± {stats[s]['std']:.{digits}f}" if stats[s]["std"] else "")
            for s in order
        )
        lines.append(f"- {label}, better first: {shown} (mean ± sample std over seeds)")
    mono = {s: table[s].get("monolingual", {}).get("mAP") for s in trained}
    if all(mono.values()) and len(mono) >= 2:
        order = sorted(mono, key=lambda s: mono[s]["mean"], reverse=True)
        lines.append("- monolingual mAP, better first: " + " > ".join(f"{s} {mono[s]['mean']:.4f}" for s in order))
    comparisons = summary.get("comparisons_multilingual_AP") or {}
    lines += [f"- {line}" for line in _comparison_lines(comparisons)]
    if comparisons:
        winners = [n for n, c in comparisons.items() if c["significant"]]
        lines.append(
            "- Conclusion: " + (f"significant at the question level after Holm: {', '.join(winners)}."
                                if winners else "no difference between the trained strategies is significant at the "
                                "question level after Holm correction.")
        )  # fmt: skip
        lines.append("- " + _across_seeds_reading(comparisons))
    unseen = summary.get("comparisons_unseen_multilingual_AP") or {}
    if unseen:
        langs = "/".join(meta.get("unseen_languages") or [])
        lines.append(f"- Query languages never trained on ({langs}), the same tests on their queries alone (Holm "
                     "within these comparisons):")  # fmt: skip
        lines += [f"  - {line}" for line in _comparison_lines(unseen)]
    return lines


def _comparison_lines(comparisons: dict) -> list[str]:
    """One line per comparison: difference, interval, question-level and across-seed tests, verdict."""
    lines = []
    for name, c in comparisons.items():
        seeds = c.get("across_seeds")
        seed_text = ""
        if seeds and seeds["seeds"] > 1:
            t_p = seeds.get("t_p_value")
            seed_text = f"; across {seeds['seeds']} seeds: "
            seed_text += f"paired t-test {p_text(t_p)}, " if t_p is not None else ""
            seed_text += f"sign-flip {p_text(seeds['p_value'])} (smallest possible {seeds['smallest_possible_p']:.3f})"
        verdict = "significant" if c["significant"] else "not significant"
        lines.append(
            f"{name}: multilingual AP difference {c['mean_difference']:+.4f}, 95% CI [{c['ci95'][0]:+.4f}, "
            f"{c['ci95'][1]:+.4f}], {p_text(c['p_value'])} (Holm {p_text(c['p_holm'])}; {c['units']:,} units, "
            f"a unit being one {c['unit']}){seed_text}: {verdict} at the question level ({LEVEL}, Holm)"
        )
    return lines


def _across_seeds_reading(comparisons: dict) -> str:
    """The question-level tests average each strategy over its seeds, so they see test-set variation only; whether
    an advantage survives training randomness is the across-seed test's question (Holm-corrected the same way)."""
    names = [n for n, c in comparisons.items() if (c.get("across_seeds") or {}).get("t_p_value") is not None]
    if not names:
        return "Across seeds: not tested (fewer than 2 seeds per strategy)."
    adjusted = dict(zip(names, holm([comparisons[n]["across_seeds"]["t_p_value"] for n in names])))
    held = [n for n in names if adjusted[n] < LEVEL]
    seeds = min(comparisons[n]["across_seeds"]["seeds"] for n in names)
    text = (f"Across seeds (paired t-test over {seeds} seeds, Holm): "
            + (f"consistent for {', '.join(held)}." if held else "no difference is consistent at 0.05."))  # fmt: skip
    return text + " Training randomness, not only the test questions, decides a claim about a training strategy."


def render_markdown(summary: dict, meta: dict) -> str:
    lines = [
        f"# Domain shift: {meta['base']} trained on {meta['train']}, evaluated on {meta['eval']}",
        "",
        f"Command: `{meta['command']}`  ",
        f"Seeds: {meta['seeds']}; steps per model: {meta['max_steps']}; batch {meta['batch_size']}; "
        f"alpha {meta['alpha']}; frozen token embeddings: {meta.get('freeze_embeddings', False)}; "
        f"trainer version {meta.get('trainer_version', 'unrecorded (1)')}  ",
        f"Overlap of training texts with the evaluation suite: queries {meta['overlap']['queries']:.2%}, "
        f"candidates {meta['overlap']['candidates']:.2%}",
        "",
    ]
    unseen = meta.get("unseen_languages") or []
    header = (
        "| model | multilingual mAP | multilingual mAP (macro over languages) | monolingual mAP | cross-lingual mAP "
        "| rank distance | lang_pref@1 | seeds |"
    )
    if unseen:
        header += f" multilingual mAP, unseen ({'/'.join(unseen)}) |"
    lines += [header, "|---" * (header.count("|") - 1) + "|"]

    def cell(strategy, setting, key, digits=4):
        value = summary["table"].get(strategy, {}).get(setting, {}).get(key)
        if not value:
            return ""
        text = f"{value['mean']:.{digits}f}"
        return text + (f" ± {value['std']:.{digits}f}" if value.get("std") else "")

    for strategy in ("base", *STRATEGIES):
        if strategy in summary["table"]:
            line = (
                f"| {strategy} | {cell(strategy, 'multilingual', 'mAP')} | "
                f"{cell(strategy, 'multilingual', 'mAP_macro_lang')} | {cell(strategy, 'monolingual', 'mAP')} | "
                f"{cell(strategy, 'cross-lingual', 'mAP')} | {cell(strategy, 'multilingual', 'rank_distance', 1)} | "
                f"{cell(strategy, 'multilingual', 'lang_pref@1', 3)} | {_seeds(summary, strategy)} |"
            )
            if unseen:
                line += f" {cell(strategy, 'multilingual', 'unseen_mAP')} |"
            lines.append(line)
    lines += [
        "",
        "± is the sample standard deviation over seeds (ddof=1). Multilingual mAP is shown both as the mean over all "
        "queries and macro-averaged over query languages (the paper's aggregate); rank distance is averaged per "
        "query language, lang_pref@1 over queries.",
    ]
    gaps = summary.get("seed_gaps_multilingual_mAP") or {}
    if gaps:
        lines += ["", "Multilingual mAP gap per seed (seed 0, 1, ...):", ""]
        for name, values in gaps.items():
            ahead = sum(v > 0 for v in values)
            shown = ", ".join(f"{v:+.4f}" for v in values)
            lines.append(f"- {name}: {shown} (hybrid ahead in {ahead} of {len(values)} seeds)")
    text = reading(summary, meta)
    if text:
        lines += ["", "**Reading** (generated from the numbers above):", "", *text]
    return "\n".join(lines) + "\n"


def _seeds(summary: dict, strategy: str) -> str:
    value = summary["table"].get(strategy, {}).get("multilingual", {}).get("mAP")
    return str(value["n"]) if value else ""
