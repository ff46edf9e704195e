"""A new user's first hour (issue 9): runs never touch the project's reference results, results hold no machine
paths, the reference set is shown only on request and marked."""

from __future__ import annotations

import hashlib
import json
import re

from conftest import ROOT, run_cli

from xlir_bench import results


def _snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.json")}


def test_a_default_run_leaves_the_reference_results_alone(fake_plugin_path, tmp_path):
    before = _snapshot(ROOT / "results")
    env = {"PYTHONPATH": str(fake_plugin_path), "XDG_DATA_HOME": str(tmp_path / "home"), "XLIR_BENCH_CACHE": ""}
    log = tmp_path / "calls.log"
    proc = run_cli(
        "run", "--model", "hash-int", "--model-arg", f"log={log}", "--suite", "mlqa-r", "--setting", "multilingual",
        "--quiet", env_extra=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _snapshot(ROOT / "results") == before
    written = list((tmp_path / "home" / "xlir-bench" / "results" / "mlqa-r").glob("*.json"))
    assert len(written) == 1
    text = written[0].read_text()
    assert str(tmp_path) not in text and "$TMPDIR" in text  # the log option, written relative to a named root
    mine = run_cli("leaderboard", "--format", "json", env_extra=env)
    assert {r["model"] for r in json.loads(mine.stdout)} == {json.loads(text)["model"]["name"]}
    both = json.loads(run_cli("leaderboard", "--format", "json", "--reference", env_extra=env).stdout)
    reference = [r for r in both if r.get("set") == "reference"]
    assert reference and len(both) > len(reference) and all("set" not in r for r in both if r not in reference)


def test_committed_results_hold_no_machine_paths():
    pattern = re.compile(r'"(/root|/home/|/Users/|/tmp/)')
    for path in sorted((ROOT / "results").rglob("*.json")):
        assert not pattern.search(path.read_text()), path


def test_portable_paths_keep_urls_and_lookalikes():
    roots = [("/home/ann", "~"), ("/tmp", "$TMPDIR")]
    doc = {"a": ["/home/ann/m", "/home/anna/m", "https://x/home/ann", "--dir=/tmp/x"], "n": 1}
    assert results.portable(doc, roots) == {
        "a": ["~/m", "/home/anna/m", "https://x/home/ann", "--dir=$TMPDIR/x"],
        "n": 1,
    }


def test_progress_moves_once_per_batch(tmp_path, fake_plugin_path, monkeypatch):
    """Built-in encoders report every batch; a plugin without a ``progress`` keyword moves once per call. Either
    way the bar ends exactly at the number of texts."""
    import pytest

    pytest.importorskip("transformers")
    from conftest import make_tiny_bert

    from xlir_bench.plugins import load_model
    from xlir_bench.scoring import encode_items

    model = load_model(f"hf:{make_tiny_bert(tmp_path, layers=1)}", device="cpu")
    texts = [f"question number {i} " + "word " * (i % 7) for i in range(50)]
    steps: list[int] = []
    encode_items(model, None, 4, "queries", "encode_queries", "en", texts, None, steps.append)
    batches = model.plugin.batches([len(x) for x in model.plugin.tokenizer(texts)["input_ids"]], 4)
    assert len(steps) == len(batches) > 1 and sum(steps) == len(texts)

    monkeypatch.syspath_prepend(str(fake_plugin_path))
    plain = load_model("hash-int", device="cpu")
    steps.clear()
    encode_items(plain, None, 4, "queries", "encode_queries", "en", texts, None, steps.append)
    assert steps == [len(texts)]
