"""What the engine evaluates: one query table and one corpus per language, whatever the suite.

Every suite is brought to this shape (:func:`from_lareqa`, :func:`from_miracl`), so one code path encodes, scores
and measures all of them. A corpus is a stream of ``(doc_id, plugin item)`` in a fixed order; an in-memory suite
streams from a list and MIRACL from its files, and the engine never holds more than a shard of either.

Ids. Inside the engine a passage is known by its *pool id*: the suite's id where ids are unique across languages
(LAReQA: ``<lang>-<paragraph>-<sentence>``), else ``<lang>:<docid>`` (MIRACL reuses ids across languages). Ties are
ordered on the pool id and runs are written with it, so trec_eval on a saved run sees the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Corpus(Protocol):
    """One language's passages in a fixed order (the order shards are cut in)."""

    language: str

    def __iter__(self) -> Iterator[tuple[str, dict]]: ...

    def fingerprint(self) -> dict:
        """What identifies the content (checksums, not paths): the vector store is keyed by it."""
        ...

    def size_hint(self) -> int | None:
        """The number of passages when known before reading (a progress total), else None."""
        ...


@dataclass
class QueryTable:
    """Every query of the run, with its relevant passages (pool ids) and their languages and gains.

    ``ids`` are unique within the run (MIRACL: ``<lang>:<qid>``); ``groups`` are the significance clusters (a
    question with its translations); ``rel_*`` are (Q, R) arrays padded with '' / 0.
    """

    ids: list[str]
    texts: list[str]
    lang: np.ndarray
    groups: list[str]
    rel_ids: np.ndarray
    rel_lang: np.ndarray
    rel_gains: np.ndarray
    _rows: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, rows: Iterable[tuple[str, str, str, str, list[tuple[str, str, float]]]]) -> QueryTable:
        """From (id, text, language, group, [(pool id, language, gain), ...]) per query, relevant ones only."""
        ids, texts, langs, groups, rels = [], [], [], [], []
        for qid, text, lang, group, relevant in rows:
            ids.append(qid)
            texts.append(text)
            langs.append(lang)
            groups.append(group)
            rels.append(relevant)
        width = max((len(r) for r in rels), default=1) or 1
        id_len = max((len(d) for r in rels for d, _, _ in r), default=1)
        rel_ids = np.full((len(rels), width), "", dtype=f"<U{id_len}")
        rel_lang = np.full((len(rels), width), "", dtype="<U16")
        gains = np.zeros((len(rels), width))
        for row, r in enumerate(rels):
            for slot, (doc, lang, gain) in enumerate(r):
                rel_ids[row, slot], rel_lang[row, slot], gains[row, slot] = doc, lang, gain
        return cls(ids, texts, np.array(langs, dtype="<U16"), groups, rel_ids, rel_lang, gains)

    def rows_of(self, lang: str) -> np.ndarray:
        rows = self._rows.get(lang)
        if rows is None:
            rows = self._rows[lang] = np.flatnonzero(self.lang == lang)
        return rows

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class EvalSuite:
    """One suite as the engine sees it."""

    name: str
    languages: list[str]
    queries: QueryTable
    corpora: dict[str, Corpus]
    settings: tuple[str, ...]
    namespaced: bool  # pool ids are "<lang>:<docid>"
    checksums: dict[str, str]
    notes: dict[str, int]
    describe: dict  # what the result's "suite" section adds (corpus checksums, official flags, ...)
    judged: dict[str, dict[str, tuple[int, str]]]  # query id -> pool id -> (grade, language), 0s too: run qrels

    def prefix(self, lang: str) -> str:
        return f"{lang}:" if self.namespaced else ""


@dataclass
class MemoryCorpus:
    """A corpus held in memory (LAReQA): its fingerprint is a digest of everything a plugin sees of it."""

    language: str
    items: list[tuple[str, dict]]

    def __iter__(self) -> Iterator[tuple[str, dict]]:
        return iter(self.items)

    def size_hint(self) -> int:
        return len(self.items)

    def fingerprint(self) -> dict:
        digest = hashlib.sha256()
        for doc_id, item in self.items:
            for part in (doc_id, item.get("text", ""), item.get("title", ""), item.get("context", "")):
                digest.update(str(part).encode() + b"\0")
        return {"source": "memory", "sha256": digest.hexdigest(), "passages": len(self.items)}


def doc_item(doc) -> dict:
    """What an encoder or index sees of a LAReQA candidate."""
    return {
        "text": doc.text,
        "title": doc.title,
        "context": doc.context,
        "language": doc.language,
        "doc_id": doc.doc_id,
    }


def from_lareqa(suite) -> EvalSuite:
    """A :class:`~xlir_bench.suites.records.SuiteData` (all in memory) as the engine's suite."""
    from .pools import SETTINGS

    corpora = {
        lang: MemoryCorpus(lang, [(suite.docs[i].doc_id, doc_item(suite.docs[i])) for i in suite.doc_ids_in(lang)])
        for lang in suite.languages
    }
    rows = []
    for q, rel, gains in zip(suite.queries, suite.rel_docs, suite.rel_gains):
        relevant = [(suite.docs[d].doc_id, suite.docs[d].language, float(g)) for d, g in zip(rel, gains)]
        rows.append((q.query_id, q.text, q.language, q.group_id, relevant))
    judged = {
        q.query_id: {d: (g, str(suite.doc_lang[suite.doc_index[d]])) for d, g in suite.qrels.get(q.query_id, {}).items()
                     if d in suite.doc_index}
        for q in suite.queries
    }  # fmt: skip
    return EvalSuite(
        suite.name, list(suite.languages), QueryTable.build(rows), corpora, SETTINGS, False,
        dict(suite.checksums), dict(suite.notes), {"documents": len(suite.docs)}, judged,
    )  # fmt: skip


@dataclass
class MiraclCorpus:
    """One MIRACL language's passages as the engine streams them; identified by the md5 of its files."""

    corpus: object  # suites.miracl.Corpus

    @property
    def language(self) -> str:
        return self.corpus.language

    def __iter__(self) -> Iterator[tuple[str, dict]]:
        lang = self.language
        for doc_id, title, text in self.corpus:
            yield doc_id, miracl_item(doc_id, title, text, lang)

    def size_hint(self) -> int | None:
        return self.corpus.passage_count()

    def fingerprint(self) -> dict:
        """The files' md5 (content, not path or mtime: a file replaced in place is a new corpus); ir_datasets'
        own copy is named by its dataset id and version."""
        checks = self.corpus.checksums()
        if "files" not in checks:
            return {**self.corpus.fingerprint(), "language": self.language}
        return {"source": "local", "language": self.language, "md5": sorted(checks["files"].values())}


def miracl_item(doc_id: str, title: str, text: str, lang: str) -> dict:
    """What a plugin sees of a MIRACL passage: ``text`` is MIRACL's "title text"; ``passage`` the text alone."""
    return {
        "text": f"{title} {text}" if title else text,
        "title": title,
        "passage": text,
        "context": "",
        "language": lang,
        "doc_id": doc_id,
    }


def from_miracl(data) -> EvalSuite:
    """MIRACL topics (in memory) and corpora (streamed) as the engine's suite. Its qrels judge passages in the
    query's language only, so it has the monolingual and multilingual settings, not cross-lingual."""
    rows, skipped, judged = [], 0, {}
    for lang in data.languages:
        topics = data.topics[lang]
        judged.update(
            {f"{lang}:{q}": {f"{lang}:{d}": (g, lang) for d, g in j.items()} for q, j in topics.qrels.items()}
        )
        for q in topics.queries:
            relevant = topics.relevant(q.query_id)
            if not relevant:  # trec_eval skips queries without a relevant passage
                skipped += 1
                continue
            qid = f"{lang}:{q.query_id}"
            rows.append((qid, q.text, lang, qid, [(f"{lang}:{d}", lang, 1.0) for d in relevant]))
    notes = {**data.notes, "queries_without_relevant": skipped}
    corpora = {lang: MiraclCorpus(data.corpora[lang]) for lang in data.languages}
    describe = {"corpus": {lang: c.checksums() for lang, c in data.corpora.items()}}
    return EvalSuite(
        data.name, list(data.languages), QueryTable.build(rows), corpora, ("monolingual", "multilingual"), True,
        dict(data.checksums), notes, describe, judged,
    )  # fmt: skip
