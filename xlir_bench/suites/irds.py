"""The suites as ir_datasets datasets, so ir_datasets users load them by id.

After ``xlir_bench.suites.irds.register()`` (no import-time side effects: registration is explicit):

* ``xlir-bench/<suite>``: the multilingual pool (docs and queries of every language; qrels = the gold sentence
  in every language), e.g. ``ir_datasets.load("xlir-bench/xquad-r")``.
* ``xlir-bench/<suite>/<lang>``: one language's docs and queries, qrels restricted to that language (the
  monolingual setting). Cross-lingual pairs are the queries of one id against the docs of another.

Records are :class:`~xlir_bench.suites.records.SuiteDoc`, ``SuiteQuery`` and ``SuiteQrel`` namedtuples. Data is
located as for the harness (``XLIR_BENCH_DATA`` or the download cache) and read on first access.

:func:`suite_from_dataset` goes the other way: any ir_datasets dataset whose docs and queries carry a
``language`` (MIRACL's do through its id) becomes the :class:`SuiteData` the evaluator runs on.
"""

from __future__ import annotations

import os
from functools import cached_property

import ir_datasets
from ir_datasets.datasets.base import Dataset
from ir_datasets.formats import BaseDocs, BaseQrels, BaseQueries

from .records import SuiteData, SuiteDoc, SuiteQrel, SuiteQuery

PREFIX = "xlir-bench"
QREL_DEFS = {1: "the candidate sentence contains the answer to the question"}


class _Source:
    """Loads the suite once, on first use, optionally restricted to one language."""

    def __init__(self, suite_name: str, language: str | None, data_dir: str | os.PathLike | None) -> None:
        self.suite_name, self.language, self.data_dir = suite_name, language, data_dir

    @cached_property
    def data(self) -> SuiteData:
        from . import SUITES

        return SUITES[self.suite_name].load(self.data_dir)

    def docs(self) -> list[SuiteDoc]:
        return [d for d in self.data.docs if self.language in (None, d.language)]

    def queries(self) -> list[SuiteQuery]:
        return [q for q in self.data.queries if self.language in (None, q.language)]

    def qrels(self) -> list[SuiteQrel]:
        keep_query = {q.query_id for q in self.queries()}
        lang = {d.doc_id: d.language for d in self.data.docs}
        return [
            r for r in self.data.qrels_iter() if r.query_id in keep_query and self.language in (None, lang[r.doc_id])
        ]


class _DocStore:
    """``docs_store()``: documents by id, as ir_datasets' stores offer them."""

    def __init__(self, docs: list[SuiteDoc]) -> None:
        self._by_id = {d.doc_id: d for d in docs}

    def get(self, doc_id: str, field: str | None = None):
        doc = self._by_id[doc_id]
        return getattr(doc, field) if field else doc

    def get_many(self, doc_ids) -> dict:
        return {d: self._by_id[d] for d in doc_ids if d in self._by_id}


class _Docs(BaseDocs):
    def __init__(self, source: _Source) -> None:
        self._source = source

    def docs_store(self) -> _DocStore:
        return _DocStore(self._source.docs())

    def docs_iter(self):
        return iter(self._source.docs())

    def docs_count(self) -> int:
        return len(self._source.docs())

    def docs_cls(self):
        return SuiteDoc

    def docs_namespace(self) -> str:
        return f"{PREFIX}/{self._source.suite_name}"

    def docs_lang(self):
        return self._source.language


class _Queries(BaseQueries):
    def __init__(self, source: _Source) -> None:
        self._source = source

    def queries_iter(self):
        return iter(self._source.queries())

    def queries_cls(self):
        return SuiteQuery

    def queries_namespace(self) -> str:
        return f"{PREFIX}/{self._source.suite_name}"

    def queries_lang(self):
        return self._source.language


class _Qrels(BaseQrels):
    def __init__(self, source: _Source) -> None:
        self._source = source

    def qrels_iter(self):
        return iter(self._source.qrels())

    def qrels_cls(self):
        return SuiteQrel

    def qrels_defs(self) -> dict[int, str]:
        return QREL_DEFS


def dataset_ids() -> list[str]:
    from . import SUITES

    return [
        name
        for suite in SUITES.values()
        for name in (f"{PREFIX}/{suite.name}", *(f"{PREFIX}/{suite.name}/{lang}" for lang in suite.languages))
    ]


def register(data_dir: str | os.PathLike | None = None) -> list[str]:
    """Register every suite id with ir_datasets (idempotent); return the ids."""
    from . import SUITES

    known = set(ir_datasets.registry)
    for suite in SUITES.values():
        for lang in (None, *suite.languages):
            name = f"{PREFIX}/{suite.name}" + (f"/{lang}" if lang else "")
            if name in known:
                continue
            source = _Source(suite.name, lang, data_dir)
            ir_datasets.registry.register(name, Dataset(_Docs(source), _Queries(source), _Qrels(source)))
    return dataset_ids()


def suite_from_dataset(name: str, dataset, languages: list[str], language_of=None) -> SuiteData:
    """Build the evaluator's :class:`SuiteData` from any ir_datasets dataset.

    Records without a ``language`` field get ``language_of(record)`` (e.g. the language in a MIRACL id).
    """

    def lang(record) -> str:
        return getattr(record, "language", None) or language_of(record)

    docs = [
        SuiteDoc(d.doc_id, d.default_text(), getattr(d, "title", ""), getattr(d, "context", ""), lang(d))
        for d in dataset.docs_iter()
    ]
    queries = [
        SuiteQuery(q.query_id, q.default_text(), lang(q), getattr(q, "group_id", q.query_id))
        for q in dataset.queries_iter()
    ]
    qrels = [SuiteQrel(r.query_id, r.doc_id, int(r.relevance)) for r in dataset.qrels_iter()]
    return SuiteData.from_records(name, languages, docs, queries, qrels)
