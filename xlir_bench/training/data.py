"""Parallel question/passage pairs for training: every question group with its text in each language.

A *group* is one question in all the languages where it exists (LAReQA's question id; mMARCO's shared query id).
For each language the group holds the question, its gold passage and optional hard negatives (for LAReQA:
the other sentences of the gold paragraph, natural near-misses). Samplers draw (group, query language, passage
language) triples from this table, so the choice of languages is theirs alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import XlirError
from ..suites.records import SuiteData


@dataclass
class ParallelGroup:
    group_id: str
    queries: dict[str, str]  # language -> question
    passages: dict[str, str]  # language -> gold passage
    negatives: dict[str, list[str]] = field(default_factory=dict)  # language -> hard negatives

    @property
    def languages(self) -> list[str]:
        return sorted(set(self.queries) & set(self.passages))


@dataclass
class ParallelData:
    groups: list[ParallelGroup]
    languages: list[str]
    source: str

    def split(self, validation_fraction: float, seed: int) -> tuple[ParallelData, ParallelData]:
        """Split by group (never by translation), so no question leaks between train and validation."""
        import numpy as np

        order = np.random.default_rng(seed).permutation(len(self.groups))
        n_val = max(1, int(round(len(order) * validation_fraction))) if validation_fraction > 0 else 0
        val = [self.groups[i] for i in sorted(order[:n_val])]
        train = [self.groups[i] for i in sorted(order[n_val:])]
        return ParallelData(train, self.languages, self.source), ParallelData(val, self.languages, self.source)


def parse_languages(text: str | None, available: list[str] | None = None) -> list[str] | None:
    """``--langs`` as a list (None: all of the data's); empty or unknown codes are one error naming the valid ones."""
    if text is None:
        return None
    langs = [x.strip() for x in text.split(",") if x.strip()]
    if not langs:
        raise XlirError(f"--langs {text!r} names no language; leave it out for all, or list codes like en,de")
    if len(set(langs)) != len(langs):
        raise XlirError(f"--langs {text!r} names a language twice")
    unknown = [x for x in langs if available is not None and x not in available]
    if unknown:
        raise XlirError(f"--langs: {', '.join(unknown)} not in the training data; it has {', '.join(available)}")
    return langs


def check_strategy(data: ParallelData, strategy: str, alpha: float) -> None:
    """Refuse a strategy the chosen languages cannot form: cross-lingual pairs need questions that exist in two
    languages (with one language, cross and hybrid batches would silently be monolingual)."""
    needs_cross = strategy == "cross" or (strategy == "hybrid" and alpha < 1)
    if needs_cross and not any(len(g.languages) >= 2 for g in data.groups):
        raise XlirError(
            f"--strategy {strategy} needs questions in at least two languages, but the training data "
            f"({', '.join(data.languages)}) has none; add languages to --langs or use --strategy mono"
        )
    if not data.groups:
        raise XlirError(f"no training questions in {data.source} for {', '.join(data.languages)}")


def from_suite(suite: SuiteData, languages: list[str] | None = None) -> ParallelData:
    """LAReQA suite -> parallel groups: question and gold sentence per language, paragraph siblings as negatives."""
    if languages is not None:
        parse_languages(",".join(languages) or " ", suite.languages)
    keep = set(languages or suite.languages)
    groups: dict[str, ParallelGroup] = {}
    for q, rel in zip(suite.queries, suite.rel_docs):
        if q.language not in keep:
            continue
        group = groups.setdefault(q.group_id, ParallelGroup(q.group_id, {}, {}, {}))
        group.queries[q.language] = q.text
        for i in rel:
            doc = suite.docs[i]
            if doc.language == q.language:
                group.passages[doc.language] = doc.text
                siblings = _paragraph_siblings(suite, i)
                group.negatives[doc.language] = [suite.docs[j].text for j in siblings]
    kept = [g for g in groups.values() if len(g.languages) >= 1]
    return ParallelData(kept, sorted(keep), suite.name)


def _paragraph_siblings(suite: SuiteData, doc_index: int) -> list[int]:
    """Other sentences of the same paragraph (doc ids share ``<lang>-<paragraph>-``)."""
    doc_id = suite.docs[doc_index].doc_id
    prefix = doc_id.rsplit("-", 1)[0] + "-"
    out = []
    for j in (doc_index - k for k in range(1, 64)):
        if j < 0 or not suite.docs[j].doc_id.startswith(prefix):
            break
        out.append(j)
    for j in (doc_index + k for k in range(1, 64)):
        if j >= len(suite.docs) or not suite.docs[j].doc_id.startswith(prefix):
            break
        out.append(j)
    return sorted(out)


def from_ir_datasets(template: str, languages: list[str]) -> ParallelData:
    """Parallel groups from ir_datasets collections whose translations share query ids across languages.

    ``template`` holds ``{lang}``, e.g. ``mmarco/v2/{lang}/train`` (the setting of arXiv 2408.10536; needs network
    the first time). A query id may carry a ``<lang>-`` prefix (as the xlir-bench datasets do); it is removed to
    find the group. The passage is the query's first relevant document; ids without one are skipped.
    """
    import ir_datasets

    groups: dict[str, ParallelGroup] = {}
    for lang in languages:
        dataset = ir_datasets.load(template.format(lang=lang))
        queries = {q.query_id: q.default_text() for q in dataset.queries_iter()}
        positive: dict[str, str] = {}
        for qrel in dataset.qrels_iter():
            if qrel.relevance > 0 and qrel.query_id not in positive:
                positive[qrel.query_id] = qrel.doc_id
        store = dataset.docs_store()
        for qid, doc_id in positive.items():
            if qid not in queries:
                continue
            key = qid[len(lang) + 1 :] if qid.startswith(f"{lang}-") else qid
            group = groups.setdefault(key, ParallelGroup(key, {}, {}, {}))
            group.queries[lang] = queries[qid]
            group.passages[lang] = store.get(doc_id).default_text()
    return ParallelData(list(groups.values()), sorted(languages), template)
