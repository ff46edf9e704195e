"""XQuAD-R and MLQA-R, built exactly as LAReQA (Roy et al., 2020, section 3.1) builds them.

* Candidates: every sentence ``context[start:end]`` for each ``sentence_breaks`` entry of every paragraph of every
  language. Identical sentences are *not* merged: each (paragraph, sentence) is its own candidate, as in the
  published counts (XQuAD-R 13,014 candidates). Only the one holding the answer is relevant; an identical twin
  elsewhere is not (in the released data no gold sentence has a same-language twin except Turkish "I.").
* A question's gold candidate in a language is the sentence whose span contains the answer's ``answer_start``
  (so an answer that runs over a sentence break belongs to the sentence it starts in).
* A question whose answer start lies in no sentence (between breaks, or past the last) has no gold candidate in
  that language; it is dropped there and counted in ``notes["answer_outside_sentences"]``. The released files
  have none.
* The relevant set of a question is its gold sentence in every language where its id exists.

Ids: documents ``<lang>-<paragraph:04d>-<sentence:02d>`` (paragraph counted through the language's file),
queries ``<lang>-<question id>`` with the question id as ``group_id``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import XlirError
from .download import fetch
from .records import SuiteData, SuiteDoc, SuiteQrel, SuiteQuery


@dataclass(frozen=True)
class LareqaSuite:
    """A LAReQA-style suite: one SQuAD-format JSON file with ``sentence_breaks`` per language."""

    name: str
    folder: str
    languages: tuple[str, ...]
    description: str
    license: str

    def files(self) -> list[str]:
        return [f"{self.folder}/{lang}.json" for lang in self.languages]

    def load(self, data_dir: str | os.PathLike | None = None, languages: list[str] | None = None) -> SuiteData:
        langs = list(languages or self.languages)
        unknown = sorted(set(langs) - set(self.languages))
        if unknown:
            raise XlirError(
                f"{self.name} has no language {', '.join(unknown)}; choose from {', '.join(self.languages)}"
            )
        docs: list[SuiteDoc] = []
        queries: list[SuiteQuery] = []
        gold: dict[str, dict[str, str]] = {}  # question id -> language -> gold doc id
        checksums: dict[str, str] = {}
        notes = {"answer_outside_sentences": 0}
        for lang in langs:
            path, md5 = fetch(f"{self.folder}/{lang}.json", data_dir)
            checksums[f"{self.folder}/{lang}.json"] = md5
            notes["answer_outside_sentences"] += _read_language(path, lang, docs, queries, gold)
        qrels = [
            SuiteQrel(f"{qlang}-{qid}", doc_id, 1)
            for qid, by_lang in gold.items()
            for qlang in by_lang
            for doc_id in by_lang.values()
        ]
        queries = [q for q in queries if q.group_id in gold and q.language in gold[q.group_id]]
        return SuiteData.from_records(self.name, langs, docs, queries, qrels, checksums=checksums, notes=notes)


def _read_language(
    path: Path, lang: str, docs: list[SuiteDoc], queries: list[SuiteQuery], gold: dict[str, dict[str, str]]
) -> int:
    """Append one language's candidates and questions; return how many answers fell outside every sentence."""
    try:
        with open(path, encoding="utf-8") as handle:
            articles = json.load(handle)["data"]
        outside = 0
        paragraph_no = 0
        for article in articles:
            title = article.get("title", "")
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                breaks = [(int(s), int(e)) for s, e in paragraph["sentence_breaks"]]
                ids = [f"{lang}-{paragraph_no:04d}-{i:02d}" for i in range(len(breaks))]
                docs.extend(SuiteDoc(doc_id, context[s:e], title, context, lang) for doc_id, (s, e) in zip(ids, breaks))
                for qa in paragraph["qas"]:
                    start = int(qa["answers"][0]["answer_start"])
                    hit = next((i for i, (s, e) in enumerate(breaks) if s <= start < e), None)
                    if hit is None:
                        outside += 1
                        continue
                    if qa["id"] in gold and lang in gold[qa["id"]]:
                        raise ValueError(f"question id {qa['id']} appears twice")
                    gold.setdefault(qa["id"], {})[lang] = ids[hit]
                    queries.append(SuiteQuery(f"{lang}-{qa['id']}", qa["question"], lang, qa["id"]))
                paragraph_no += 1
        return outside
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise XlirError(
            f"corrupt suite file {path}: {type(exc).__name__}: {exc}; replace it with the original"
        ) from None
