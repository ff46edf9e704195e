"""Fixture corpora in MIRACL's record format, built from the real dev qrels of a language.

Every passage the qrels judge (relevant or not) is in the corpus, plus generated distractors, so the real queries and
qrels run end to end. Passage texts are made from the query texts: a relevant passage repeats words of its query,
which gives lexical and character n-gram models something to find. ``duplicates`` adds exact copies of some
relevant passages under other ids (heavy ties for every model), ``drop`` leaves some judged passages out.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from xlir_bench.suites import miracl


def write_corpus(
    data: Path,
    out: Path,
    lang: str,
    *,
    distractors: int = 200,
    duplicates: int = 0,
    drop: int = 0,
    files: int = 2,
    seed: int = 0,
    max_queries: int | None = None,
) -> Path:
    """Write ``out/miracl/<lang>/{dev,corpus}`` (dev copied from ``data``) and return ``out``."""
    rng = random.Random(seed)
    topics = miracl.load_topics(lang, data)
    dev = out / "miracl" / lang / "dev"
    dev.mkdir(parents=True, exist_ok=True)
    for name in ("topics.tsv", "qrels.tsv"):
        (dev / name).write_bytes((data / "miracl" / lang / "dev" / name).read_bytes())
    words = [w for q in topics.queries for w in q.text.split()] or ["x"]
    records = []
    queries = topics.queries[:max_queries] if max_queries else topics.queries
    judged = {}
    for q in queries:
        for doc, grade in sorted(topics.qrels.get(q.query_id, {}).items()):
            judged.setdefault(doc, (q.text, grade))
    for doc, (qtext, grade) in sorted(judged.items()):
        filler = " ".join(rng.choice(words) for _ in range(6))
        text = f"{qtext} {filler}" if grade > 0 else f"{filler} {rng.choice(words)}"
        records.append({"docid": doc, "title": doc.split("#")[0], "text": text})
    rng.shuffle(records)
    records = records[drop:] if drop else records
    relevant = [r for r in records if judged[r["docid"]][1] > 0]
    for i in range(duplicates):
        src = relevant[i % len(relevant)]
        records.append({"docid": f"9{i:05d}#0", "title": src["title"], "text": src["text"]})
    for i in range(distractors):
        records.append(
            {"docid": f"8{i:05d}#{i % 7}", "title": "", "text": " ".join(rng.choice(words) for _ in range(8))}
        )
    rng.shuffle(records)
    corpus = out / "miracl" / lang / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(records) // files)
    for f in range(files):
        part = records[f * per_file : (f + 1) * per_file]
        path = corpus / f"docs-{f}.jsonl.gz" if f % 2 == 0 else corpus / f"docs-{f}.jsonl"
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "wt", encoding="utf-8") as handle:
            for r in part:
                handle.write(json.dumps(r, ensure_ascii=False) + "\n")
    return out
