"""The two-engine harness's in-memory Evaluator against the one engine on the *same* stored vectors: separates the
engine's share of a result change (tie rule, canonical scores) from the encoder's (another CPU's int8/bf16 kernels).

Usage (the old code in a worktree; the new result and the store it used from a run of the one engine):
    git worktree add /tmp/old e2a52b1
    PYTHONPATH=/tmp/old python benchmarks/diagnostics/engine_vs_two_engines.py SUITE RESULT_FILE STORE NEW_RESULTS DATA
e.g. ``xquad-r "e5-small_dtype_int8+52f0d367d0.json" $XLIR_BENCH_CACHE results ../shared/data``, the cache being
that of a run of this one model (every stored vector is read).
Prints, per setting, the one engine's measure minus the old evaluator's on identical vectors.
"""

import json
import sys
from pathlib import Path

import numpy as np
from xlir_bench.evaluate import Evaluator  # the old harness (PYTHONPATH at its worktree)
from xlir_bench.scoring import ScoreSource

from xlir_bench import results, suites

MEASURES = ("mAP", "R@1", "R@10", "R@100", "nDCG@10", "MRR")


class Stored:
    kind, similarity, name = "dense", "cosine", "stored"


def stored_vectors(data, suite_name: str, store: Path, model: dict, batch_size: int):
    """(query vectors, candidate vectors) in the suite's order, read from the one engine's store (a store that holds
    this model's vectors only: ``XLIR_BENCH_CACHE`` of a run of that model alone)."""
    dim = int(model["metadata"].get("dimension") or 384)
    q = np.zeros((len(data.queries), dim), np.float32)
    d = np.zeros((len(data.docs), dim), np.float32)
    query_row = {query.query_id: k for k, query in enumerate(data.queries)}

    for corpus_json in store.glob("shards/*/*/corpus.json"):
        info, folder = json.loads(corpus_json.read_text())["corpus"], corpus_json.parent
        ids = np.concatenate([np.load(p) for p in sorted(folder.glob("shard-*.ids.npy"))])
        vecs = np.concatenate([np.load(p) for p in sorted(folder.glob("shard-*.vecs.npy"))])
        if info.get("kind") == "corpus" and info.get("suite") == suite_name:
            d[[data.doc_index[str(i)] for i in ids]] = vecs
        elif info.get("kind") == "queries":
            rows = [(query_row[str(i)], k) for k, i in enumerate(ids) if str(i) in query_row]
            q[[r for r, _ in rows]] = vecs[[k for _, k in rows]]
    return q, d


def main() -> None:
    suite_name, label_file, store, new_root, data_dir = sys.argv[1:6]
    data = suites.load(suite_name, data_dir)
    new = results.read_result(Path(new_root) / suite_name / label_file)
    source = ScoreSource.__new__(ScoreSource)
    source.model, source.suite, source.score_seconds = Stored(), data, 0.0
    source._q, source._d = stored_vectors(data, suite_name, Path(store), new["model"], new["provenance"]["batch_size"])
    source._pools = {"all": np.arange(len(data.docs)), **{x: data.doc_ids_in(x) for x in data.languages}}
    old = Evaluator(source, data).evaluate()
    for setting, block in old.items():
        diffs = {m: new["settings"][setting]["metrics"][m] - block["metrics"][m] for m in MEASURES}
        print(setting, {k: f"{v:+.1e}" for k, v in diffs.items()})


if __name__ == "__main__":
    main()
