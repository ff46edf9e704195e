"""The three evaluation settings over one suite, computed exactly from score blocks.

* monolingual: queries of X against the candidates of X; mean over queries per language, then over languages.
* cross-lingual: queries of X that have an answer in Y against the candidates of Y, for every ordered pair
  X != Y; mean per pair, then macro-average over pairs (the per-pair matrix is kept).
* multilingual: every query of every language against the whole mixed pool; mean over all queries, with a
  per-query-language breakdown and the language-bias measures of :mod:`xlir_bench.metrics.bias`.

A query's relevant set is restricted to the pool; queries with nothing relevant in the pool are not evaluated
(as trec_eval skips queries without relevant documents).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import metrics
from .metrics import bias
from .scoring import ALL, ScoreSource
from .suites.records import SuiteData

SETTINGS = ("monolingual", "cross-lingual", "multilingual")
BLOCK_ELEMENTS = 1 << 22  # scores held at once (B x pool size): bounds memory for any pool
PER_QUERY_DECIMALS = 6


@dataclass
class Block:
    """Exact results for a set of queries against one pool."""

    query_idx: np.ndarray
    values: dict[str, np.ndarray]
    ranks: np.ndarray  # (Q, R) ranks of the relevant docs within the pool, inf = padding
    rel_docs: np.ndarray  # (Q, R) global doc indices of those docs, -1 = padding
    top1: np.ndarray  # (Q,) global doc index ranked first
    run: list[tuple[np.ndarray, np.ndarray]] | None = None  # per query (global doc idx, scores), ranked


class Evaluator:
    """Runs the settings for one (model, suite), reporting progress through ``advance(label, n)``."""

    def __init__(
        self,
        source: ScoreSource,
        suite: SuiteData,
        advance: Callable[[str, int], None] = lambda label, n: None,
        run_depth: int | None = None,
    ) -> None:
        self.source, self.suite, self.advance, self.run_depth = source, suite, advance, run_depth
        self.tiebreak = metrics.descending_id_order([d.doc_id for d in suite.docs])
        # setting -> [(run query id, query index, pool, ranked global doc indices, their scores)]
        self.runs: dict[str, list[tuple[str, int, str, np.ndarray, np.ndarray]]] = {s: [] for s in SETTINGS}
        # Per-query AP aligned with suite.queries (NaN = not evaluated); cross-lingual keyed by pool language.
        n = len(suite.queries)
        self.per_query: dict[str, object] = {
            "monolingual": np.full(n, np.nan),
            "multilingual": np.full(n, np.nan),
            "cross-lingual": {y: np.full(n, np.nan) for y in suite.languages},
        }

    # -- planning -------------------------------------------------------------------------------------------
    def _in_pool(self, query_idx: np.ndarray, pool: str) -> np.ndarray:
        if pool == ALL:
            return query_idx
        lang = self.suite.doc_lang
        return np.array([q for q in query_idx if np.any(lang[self.suite.rel_docs[q]] == pool)], dtype=np.int64)

    @cached_property
    def pairs(self) -> list[tuple[str, str, np.ndarray]]:
        """Ordered language pairs (X, Y) with the queries of X that have a relevant candidate in Y."""
        langs = self.suite.languages
        out = []
        for x in langs:
            queries = self.suite.query_ids_in(x)
            for y in langs:
                if x != y:
                    kept = self._in_pool(queries, y)
                    if len(kept):
                        out.append((x, y, kept))
        return out

    def total_work(self, settings: tuple[str, ...] = SETTINGS) -> int:
        """Queries to evaluate over ``settings`` (the progress bar's total)."""
        work = {
            "monolingual": sum(len(self._in_pool(self.suite.query_ids_in(x), x)) for x in self.suite.languages),
            "cross-lingual": sum(len(q) for _, _, q in self.pairs),
            "multilingual": len(self.suite.queries),
        }
        return sum(work[s] for s in settings)

    # -- core -----------------------------------------------------------------------------------------------
    def run_block(self, query_idx: np.ndarray, pool: str, language: str, label: str) -> Block:
        pool_docs = self.source.pool(pool)
        position = np.full(len(self.suite.docs), -1, dtype=np.int64)
        position[pool_docs] = np.arange(len(pool_docs))
        tiebreak = self.tiebreak[pool_docs]
        step = max(1, BLOCK_ELEMENTS // max(1, len(pool_docs)))
        parts: list[Block] = []
        for lo in range(0, len(query_idx), step):
            qs = query_idx[lo : lo + step]
            rel = [self.suite.rel_docs[q][position[self.suite.rel_docs[q]] >= 0] for q in qs]
            gains = [self.suite.rel_gains[q][position[self.suite.rel_docs[q]] >= 0] for q in qs]
            rel_global, padded_gains = metrics.pad_relevant(rel, gains)
            rel_local = np.where(rel_global >= 0, position[np.maximum(rel_global, 0)], -1)
            scores = self.source.scores(qs, pool, language)
            ranks, top1_local = metrics.ranks_and_top1(scores, rel_local, tiebreak)
            top1 = pool_docs[top1_local]
            run = None
            if self.run_depth:
                top = metrics.top_k(scores, self.run_depth, tiebreak)
                run = [(pool_docs[t], scores[row, t]) for row, t in enumerate(top)]
            parts.append(Block(qs, metrics.compute_all(ranks, padded_gains), ranks, rel_global, top1, run))
            self.advance(label, len(qs))
        return _concat(parts)

    def _record_run(self, setting: str, block: Block, pool: str, suffix: str = "") -> None:
        """Keep a block's ranked lists; cross-lingual query ids get ``@<pool language>`` to stay unique."""
        if block.run is None:
            return
        for q, (docs, scores) in zip(block.query_idx, block.run):
            self.runs[setting].append((self.suite.queries[q].query_id + suffix, int(q), pool, docs, scores))

    # -- settings -------------------------------------------------------------------------------------------
    def monolingual(self) -> dict:
        per_language = {}
        for x in self.suite.languages:
            block = self.run_block(self._in_pool(self.suite.query_ids_in(x), x), x, x, f"monolingual {x}")
            per_language[x] = _means(block)
            self.per_query["monolingual"][block.query_idx] = block.values["mAP"]
            self._record_run("monolingual", block, x)
        return {"metrics": _macro(per_language), "per_language": per_language}

    def cross_lingual(self) -> dict:
        per_pair = {}
        for x, y, queries in self.pairs:
            block = self.run_block(queries, y, x, f"cross-lingual {x}->{y}")
            per_pair[f"{x}-{y}"] = _means(block)
            self.per_query["cross-lingual"][y][block.query_idx] = block.values["mAP"]
            self._record_run("cross-lingual", block, y, suffix=f"@{y}")
        return {"metrics": _macro(per_pair), "per_pair": per_pair}

    def multilingual(self) -> dict:
        blocks = []
        for x in self.suite.languages:
            block = self.run_block(self.suite.query_ids_in(x), ALL, x, f"multilingual {x}")
            self._record_run("multilingual", block, ALL)
            blocks.append((x, block))
        everything = _concat([b for _, b in blocks])
        self.per_query["multilingual"][everything.query_idx] = everything.values["mAP"]
        bias_all, per_language = self._bias(everything), {}
        self.rank_distance = np.full(len(self.suite.queries), np.nan)
        self.rank_distance[everything.query_idx] = bias_all["rank_distance"]
        for x, block in blocks:
            per_language[x] = {**_means(block), **_summarise_bias(self._bias(block))}
        summary = _means(everything)
        result = {
            "metrics": summary,
            "per_language": per_language,
            "bias": {
                # rank distance: mean per query language, then over languages; shares: over all queries
                "rank_distance": float(np.mean([per_language[x]["rank_distance"] for x, _ in blocks])),
                "lang_pref@1": float(bias_all["lang_pref@1"].mean()),
                "top1": {cell: float(bias_all[cell].mean()) for cell in bias.TOP1_CELLS},
                "languages": len(self.suite.languages),
            },
        }
        return result

    def _bias(self, block: Block) -> dict[str, np.ndarray]:
        doc_lang = self.suite.doc_lang
        rel_lang = np.where(block.rel_docs >= 0, doc_lang[np.maximum(block.rel_docs, 0)], "")
        query_lang = self.suite.query_lang[block.query_idx]
        # the block's relevant docs are those in its pool, and the top 1 is in the pool: the same test as membership
        # in the query's relevant list
        top1_relevant = (block.rel_docs == block.top1[:, None]).any(axis=1)
        out = {
            "rank_distance": bias.rank_distance(block.ranks),
            "lang_pref@1": bias.prefers_own_language(block.ranks, rel_lang, query_lang),
        }
        out.update(bias.top1_cells(top1_relevant, doc_lang[block.top1] == query_lang))
        return out

    def per_query_ap(self, settings: tuple[str, ...]) -> dict:
        """Per-query AP for significance tests: lists aligned with ``query_ids``, null where not evaluated.

        Rounded to 1e-6 to keep result files small; every aggregate is computed before rounding.
        """

        def as_list(values: np.ndarray) -> list:
            return [None if np.isnan(v) else round(float(v), PER_QUERY_DECIMALS) for v in values]

        out: dict = {}
        for setting in settings:
            values = self.per_query[setting]
            out[setting] = {y: as_list(v) for y, v in values.items()} if isinstance(values, dict) else as_list(values)
        doc = {"query_ids": [q.query_id for q in self.suite.queries], "AP": out}
        if "multilingual" in settings and getattr(self, "rank_distance", None) is not None:
            # the language-bias picture per query (rank distance of its parallel answers), for plots
            doc["rank_distance"] = {
                "multilingual": [None if np.isnan(v) else round(float(v), 1) for v in self.rank_distance]
            }
        return doc

    def evaluate(self, settings: tuple[str, ...] = SETTINGS) -> dict[str, dict]:
        runners = {
            "monolingual": self.monolingual,
            "cross-lingual": self.cross_lingual,
            "multilingual": self.multilingual,
        }
        return {name: runners[name]() for name in settings}


def _concat(parts: list[Block]) -> Block:
    if len(parts) == 1:
        return parts[0]
    width = max(p.ranks.shape[1] for p in parts)

    def pad(a: np.ndarray, fill) -> np.ndarray:
        return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill)

    runs = [r for p in parts for r in (p.run or [])]
    return Block(
        np.concatenate([p.query_idx for p in parts]),
        {k: np.concatenate([p.values[k] for p in parts]) for k in parts[0].values},
        np.concatenate([pad(p.ranks, np.inf) for p in parts]),
        np.concatenate([pad(p.rel_docs, -1) for p in parts]),
        np.concatenate([p.top1 for p in parts]),
        runs if parts[0].run is not None else None,
    )


def _means(block: Block) -> dict:
    out: dict = {name: float(np.mean(v)) for name, v in block.values.items()}
    out["queries"] = len(block.query_idx)
    return out


def _macro(groups: dict[str, dict]) -> dict:
    names = [k for k in next(iter(groups.values())) if k != "queries"]
    out: dict = {name: float(np.mean([g[name] for g in groups.values()])) for name in names}
    out["queries"] = int(sum(g["queries"] for g in groups.values()))
    out["groups"] = len(groups)
    return out


def _summarise_bias(values: dict[str, np.ndarray]) -> dict:
    return {
        "rank_distance": float(values["rank_distance"].mean()),
        "lang_pref@1": float(values["lang_pref@1"].mean()),
    }
