"""Record types shared by every suite, and the in-memory form the evaluator works on.

The records are namedtuples in the style of ir_datasets, so the same loaders back both the harness and the
ir_datasets registration (:mod:`xlir_bench.suites.irds`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


class SuiteDoc(NamedTuple):
    """A retrieval candidate. For LAReQA suites ``text`` is one sentence and ``context`` its paragraph."""

    doc_id: str
    text: str
    title: str
    context: str
    language: str

    def default_text(self) -> str:
        return self.text


class SuiteQuery(NamedTuple):
    """A query. ``group_id`` is shared by the translations of one question (the original question id)."""

    query_id: str
    text: str
    language: str
    group_id: str

    def default_text(self) -> str:
        return self.text


class SuiteQrel(NamedTuple):
    query_id: str
    doc_id: str
    relevance: int


@dataclass
class SuiteData:
    """One suite loaded into arrays: documents, queries and multilingual qrels (relevant docs in every language).

    The monolingual and cross-lingual settings restrict the pool to one language, which restricts each query's
    relevant set to the relevant docs in that language; nothing else about the qrels changes.
    """

    name: str
    languages: list[str]
    docs: list[SuiteDoc]
    queries: list[SuiteQuery]
    qrels: dict[str, dict[str, int]]
    checksums: dict[str, str] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.doc_index = {d.doc_id: i for i, d in enumerate(self.docs)}
        self.doc_lang = np.array([d.language for d in self.docs])
        self.query_lang = np.array([q.language for q in self.queries])
        # Relevant doc indices (positive relevance only) and their gains, per query index.
        self.rel_docs: list[np.ndarray] = []
        self.rel_gains: list[np.ndarray] = []
        for q in self.queries:
            judged = self.qrels.get(q.query_id, {})
            pos = sorted((self.doc_index[d], g) for d, g in judged.items() if g > 0 and d in self.doc_index)
            self.rel_docs.append(np.array([i for i, _ in pos], dtype=np.int64))
            self.rel_gains.append(np.array([g for _, g in pos], dtype=np.float64))

    @classmethod
    def from_records(
        cls,
        name: str,
        languages: list[str],
        docs: Iterable[SuiteDoc],
        queries: Iterable[SuiteQuery],
        qrels: Iterable[SuiteQrel],
        **extra,
    ) -> SuiteData:
        table: dict[str, dict[str, int]] = defaultdict(dict)
        for qrel in qrels:
            table[qrel.query_id][qrel.doc_id] = qrel.relevance
        return cls(name, languages, list(docs), list(queries), dict(table), **extra)

    def doc_ids_in(self, language: str) -> np.ndarray:
        return np.flatnonzero(self.doc_lang == language)

    def query_ids_in(self, language: str) -> np.ndarray:
        return np.flatnonzero(self.query_lang == language)

    def qrels_iter(self) -> Iterable[SuiteQrel]:
        for qid, judged in self.qrels.items():
            for did, rel in judged.items():
                yield SuiteQrel(qid, did, rel)
