"""From the engine's exact pool states to the result: measures per setting, language bias, per-query values, runs.

Aggregation (the same for every suite):

* monolingual: mean over each language's queries, then the mean over languages;
* cross-lingual: mean over the queries of each ordered pair X-Y, then the mean over pairs (the matrix is kept);
* multilingual: mean over all queries (``metrics``), with the per-language means and their mean
  (``macro_over_languages``).

Language bias, measured in the multilingual pool, one definition each (:mod:`xlir_bench.metrics.bias`):

* ``rank_distance``: max - min rank of a query's relevant passages, over queries whose relevant passages span at
  least two languages (LAReQA's parallel answers); mean per query language, then over languages. None when no
  query qualifies (MIRACL judges passages in the query's language only).
* ``lang_pref@1``: over the same queries, the share whose best-ranked relevant passage is in the query's language.
* ``top1``: where the rank-1 passage falls (relevant or not x same language or not); ``top1_same_language`` is the
  share of queries whose rank-1 passage is in their own language, relevant or not.
* ``other_language@k``: the mean share of a query's top k passages in another language.
"""

from __future__ import annotations

import numpy as np

from .. import metrics
from ..metrics import bias
from .core import BIAS_CUTOFFS, Engine
from .pools import Pool

PER_QUERY_DECIMALS = 6


def _means(values: dict[str, np.ndarray], rows: np.ndarray) -> dict:
    return {name: float(np.mean(v[rows])) for name, v in values.items()} | {"queries": int(len(rows))}


def _macro(groups: dict[str, dict]) -> dict:
    names = [k for k in next(iter(groups.values())) if k != "queries"]
    out: dict = {name: float(np.mean([g[name] for g in groups.values()])) for name in names}
    return out | {"queries": int(sum(g["queries"] for g in groups.values())), "groups": len(groups)}


class Outcome:
    """The measured pools of one engine run (rank 0)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.suite = engine.suite
        self._bias: dict[int, dict[str, np.ndarray]] = {}
        self.values: list[dict[str, np.ndarray]] = []
        for i, pool in enumerate(engine.pools):
            state = engine.state_of(i)
            gains = np.where(pool.in_pool, self.suite.queries.rel_gains[pool.rows], 0.0)
            self.values.append(metrics.compute_all(state.ranks(), gains))

    def _pools(self, setting: str) -> list[tuple[int, Pool]]:
        return [(i, p) for i, p in enumerate(self.engine.pools) if p.setting == setting]

    def settings(self) -> dict:
        """The result's ``settings`` section, in the order asked."""
        out = {}
        for setting in self.engine.settings:
            pools = [(i, p) for i, p in self._pools(setting) if len(p.rows)]
            if not pools:
                continue
            out[setting] = getattr(self, "_" + setting.replace("-", "_"))(pools)
        return out

    def _monolingual(self, pools) -> dict:
        per_language = {p.name: _means(self.values[i], np.arange(len(p.rows))) for i, p in pools}
        return {"metrics": _macro(per_language), "per_language": per_language}

    def _cross_lingual(self, pools) -> dict:
        lang = self.suite.queries.lang
        cells: dict[tuple[str, str], dict] = {}
        for i, p in pools:
            for x in self.suite.languages:
                at = np.flatnonzero(lang[p.rows] == x)
                if len(at):
                    cells[(x, p.name)] = _means(self.values[i], at)
        order = {x: n for n, x in enumerate(self.suite.languages)}
        per_pair = {f"{x}-{y}": cells[(x, y)] for x, y in sorted(cells, key=lambda c: (order[c[0]], order[c[1]]))}
        return {"metrics": _macro(per_pair), "per_pair": per_pair}

    def _multilingual(self, pools) -> dict:
        ((i, pool),) = pools
        values, q_lang = self.values[i], self.suite.queries.lang[pool.rows]
        per_query_bias = self._bias_per_query(i, pool)
        per_language = {}
        for x in self.suite.languages:
            at = np.flatnonzero(q_lang == x)
            if len(at):
                per_language[x] = _means(values, at) | _bias_means(per_query_bias, at)
        macro = {k: float(np.mean([g[k] for g in per_language.values()])) for k in values}
        return {
            "metrics": _means(values, np.arange(len(pool.rows))),
            "macro_over_languages": macro,
            "per_language": per_language,
            "bias": self._bias_summary(per_query_bias, per_language),
        }

    # -- language bias --------------------------------------------------------------------------------------
    def _bias_per_query(self, i: int, pool: Pool) -> dict[str, np.ndarray]:
        if i not in self._bias:
            self._bias[i] = self._compute_bias(i, pool)
        return self._bias[i]

    def _compute_bias(self, i: int, pool: Pool) -> dict[str, np.ndarray]:
        queries, state = self.suite.queries, self.engine.state_of(i)
        ranks = state.ranks()
        rel_lang = np.where(pool.in_pool, queries.rel_lang[pool.rows], "")
        q_lang = queries.lang[pool.rows]
        spans = np.array([len(set(row) - {""}) >= 2 for row in rel_lang])
        out = {
            "rank_distance": np.where(spans, bias.rank_distance(ranks), np.nan),
            "lang_pref@1": np.where(spans, bias.prefers_own_language(ranks, rel_lang, q_lang), np.nan),
        }
        top_lang = self.engine.doc_languages(state.top_ids)
        has_top = state.top_n > 0
        rel_ids = state.rel_ids
        top1_relevant = has_top & (rel_ids == state.top_ids[:, :1]).any(axis=1) & (state.top_ids[:, 0] != "")
        out.update(bias.top1_cells(top1_relevant, has_top & (top_lang[:, 0] == q_lang)))
        for k in BIAS_CUTOFFS:
            filled = np.arange(state.k)[None, :k] < np.minimum(state.top_n, k)[:, None]
            other = (top_lang[:, :k] != q_lang[:, None]) & filled
            out[f"other_language@{k}"] = other.sum(axis=1) / np.maximum(filled.sum(axis=1), 1)
        return out

    def _bias_summary(self, per_query: dict[str, np.ndarray], per_language: dict) -> dict:
        distances = [g["rank_distance"] for g in per_language.values() if g.get("rank_distance") is not None]
        qualified = ~np.isnan(per_query["rank_distance"])
        top1 = {cell: float(per_query[cell].mean()) for cell in bias.TOP1_CELLS}
        out = {
            "rank_distance": float(np.mean(distances)) if distances else None,
            "rank_distance_queries": int(qualified.sum()),
            "lang_pref@1": float(np.mean(per_query["lang_pref@1"][qualified])) if qualified.any() else None,
            "top1": top1,
            "top1_same_language": top1["relevant_same"] + top1["irrelevant_same"],
            "languages": len(self.suite.languages),
        }
        for k in BIAS_CUTOFFS:
            out[f"other_language@{k}"] = float(per_query[f"other_language@{k}"].mean())
        return out

    # -- per query and runs ---------------------------------------------------------------------------------
    def per_query(self) -> dict:
        """Per-query AP aligned with ``query_ids`` (null where a query is not in the setting), for significance
        tests; rounded to 1e-6 to keep result files small (every aggregate is computed before rounding)."""
        n = len(self.suite.queries)

        def as_list(values: np.ndarray, decimals: int = PER_QUERY_DECIMALS) -> list:
            return [None if np.isnan(v) else round(float(v), decimals) for v in values]

        ap: dict = {}
        for setting in self.engine.settings:
            if setting == "cross-lingual":
                ap[setting] = {p.name: as_list(self.values_of(setting, "mAP", p.name)) for _, p in self._pools(setting)}
            elif self._pools(setting):
                ap[setting] = as_list(self.values_of(setting, "mAP"))
        doc = {"query_ids": list(self.suite.queries.ids), "AP": ap}
        for i, p in self._pools("multilingual"):
            full = np.full(n, np.nan)
            full[p.rows] = self._bias_per_query(i, p)["rank_distance"]
            doc["rank_distance"] = {"multilingual": as_list(full, 1)}
        return doc

    def values_of(self, setting: str, measure: str = "mAP", pool: str | None = None) -> np.ndarray:
        """A measure's per-query values aligned with the suite's queries (NaN where a query is not in the setting,
        or not in ``pool`` for cross-lingual, whose pools share queries), at full precision."""
        full = np.full(len(self.suite.queries), np.nan)
        for i, p in self._pools(setting):
            if pool is None or p.name == pool:
                full[p.rows] = self.values[i][measure]
        return full

    def runs(self) -> dict[str, list[tuple[str, list[str], list[float]]]]:
        """TREC runs per setting: (query id, ranked pool ids, scores). Cross-lingual query ids get ``@<target>``
        so that a query ranked in several pools stays one query per pool."""
        depth = self.engine.run_depth
        out: dict[str, list] = {}
        if not depth:
            return out
        for i, pool in enumerate(self.engine.pools):
            state = self.engine.state_of(i)
            suffix = f"@{pool.name}" if pool.setting == "cross-lingual" else ""
            rows = out.setdefault(pool.setting, [])
            for local, q in enumerate(pool.rows):
                n = min(int(state.top_n[local]), depth)
                rows.append((self.suite.queries.ids[q] + suffix, [str(x) for x in state.top_ids[local, :n]],
                             [float(x) for x in state.top_scores[local, :n]]))  # fmt: skip
        return out

    def qrels(self, setting: str) -> list[tuple[str, str, int]]:
        """Every judged pair (0s too) of the setting's pools, ids as :meth:`runs` writes them."""
        out = []
        for pool in self.engine.pools:
            if pool.setting != setting:
                continue
            suffix = f"@{pool.name}" if setting == "cross-lingual" else ""
            for q in pool.rows:
                qid = self.suite.queries.ids[q]
                for doc, (grade, lang) in self.suite.judged.get(qid, {}).items():
                    if lang in pool.languages:
                        out.append((qid + suffix, doc, int(grade)))
        return out

    def groups(self, setting: str) -> dict[str, list[str]] | None:
        """How the setting's value is aggregated from its run's queries: {group: query ids} averaged per group, then
        over groups (None: one mean over all queries). ``--measure`` aggregates ir-measures values the same way."""
        if setting == "multilingual":
            return None
        lang, out = self.suite.queries.lang, {}
        for pool in self.engine.pools:
            if pool.setting != setting:
                continue
            for q in pool.rows:
                if setting == "monolingual":
                    out.setdefault(pool.name, []).append(self.suite.queries.ids[q])
                else:
                    out.setdefault(f"{lang[q]}-{pool.name}", []).append(f"{self.suite.queries.ids[q]}@{pool.name}")
        return out


def _bias_means(per_query: dict[str, np.ndarray], at: np.ndarray) -> dict:
    """A language's share of the bias picture: rank distance and lang_pref@1 over its qualifying queries."""
    out = {}
    for key in ("rank_distance", "lang_pref@1"):
        values = per_query[key][at]
        values = values[~np.isnan(values)]
        out[key] = float(values.mean()) if len(values) else None
    return out
