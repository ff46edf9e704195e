"""The settings as pools: which queries are ranked against which languages' passages.

* monolingual: one pool per language X, holding the queries of X that have a relevant passage in X;
* cross-lingual: one pool per target language Y, holding the queries of every other language that have a relevant
  passage in Y (their pair X-Y is read off the query's language);
* multilingual: one pool over all languages, holding every query with a relevant passage.

A query's relevant set inside a pool is its relevant passages in the pool's languages; a query with none there is
not in the pool (trec_eval skips queries without relevant documents). A pool that equals an earlier one (the
multilingual pool of a one-language suite is its monolingual pool) is scored once and shared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import QueryTable

SETTINGS = ("monolingual", "cross-lingual", "multilingual")
ALL = "all"


@dataclass
class Pool:
    setting: str
    name: str  # the pool's language, or "all"
    languages: tuple[str, ...]
    rows: np.ndarray  # global query rows, ascending
    in_pool: np.ndarray  # (len(rows), R): relevant slots whose passage is in the pool
    same_as: int | None = None  # index of an identical earlier pool, whose state this one reads

    def local(self, n_queries: int) -> np.ndarray:
        """Global row -> position in this pool (-1: not in it)."""
        out = np.full(n_queries, -1, dtype=np.int64)
        out[self.rows] = np.arange(len(self.rows))
        return out


def plan(queries: QueryTable, languages: list[str], settings: tuple[str, ...]) -> list[Pool]:
    """The pools of ``settings`` in a fixed order (settings, then languages)."""
    has_rel = queries.rel_ids != ""
    pools: list[Pool] = []

    def add(setting: str, name: str, langs: tuple[str, ...], candidates: np.ndarray) -> None:
        inside = has_rel[candidates] & np.isin(queries.rel_lang[candidates], langs)
        keep = inside.any(axis=1)
        pools.append(Pool(setting, name, langs, candidates[keep], inside[keep]))

    for setting in settings:
        if setting == "monolingual":
            for x in languages:
                add(setting, x, (x,), queries.rows_of(x))
        elif setting == "cross-lingual":
            for y in languages:
                add(setting, y, (y,), np.flatnonzero(queries.lang != y))
        elif setting == "multilingual":
            add(setting, ALL, tuple(languages), np.arange(len(queries)))
        else:
            raise ValueError(f"unknown setting {setting!r}")
    seen: dict[tuple, int] = {}
    for i, pool in enumerate(pools):
        key = (tuple(sorted(pool.languages)), pool.rows.tobytes(), pool.in_pool.tobytes())
        pool.same_as = seen.get(key)
        seen.setdefault(key, i)
    return pools


def pools_of(pools: list[Pool], lang: str) -> list[int]:
    """Indices of the scored pools (not aliases) that hold ``lang``'s passages."""
    return [i for i, p in enumerate(pools) if p.same_as is None and lang in p.languages]
