"""Reliability (issue 8): no silent wrong numbers, no silently lost results, one-line errors, no hangs.

Each test names the case class of docs/RELIABILITY.md it covers. Real-process tests run the CLI on the real
XQuAD-R / MLQA-R data with the fake plugins of conftest (fast, deterministic vectors).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import DATA, run_cli
from test_cli import one_line_error

from xlir_bench import cache, plugins, results
from xlir_bench.errors import XlirError
from xlir_bench.fileio import NotARegularFile, map_file, read_bytes, read_json
from xlir_bench.report import Report


def _env(site, tmp_path, **extra) -> dict:
    return {"PYTHONPATH": str(site), "XLIR_BENCH_CACHE": str(tmp_path / "cache"), **extra}


def _run(site, tmp_path, *args, suite="mlqa-r", setting="multilingual", **extra):
    cmd = ["run", *args, "--suite", suite, "--results-dir", str(tmp_path / "results"), "--quiet"]
    if setting:
        cmd += ["--setting", setting]
    return run_cli(*cmd, env_extra=_env(site, tmp_path, **extra))


def _result(tmp_path, model: str, suite: str = "mlqa-r") -> dict:
    return results.read_result(results.result_path(tmp_path / "results", model, suite))


# -- 1. numerics of plugin vectors ----------------------------------------------------------------------------------
def test_scaled_vectors_give_identical_numbers(fake_plugin_path, tmp_path):
    """Cosine is scale-free: vectors times 1e20 or 1e-30 (float32) score exactly like unscaled ones."""
    outs = []
    for scale in ("1.0", "1e20", "1e-30"):
        proc = _run(fake_plugin_path, tmp_path, "--model", "scaled", "--model-arg", f"scale={scale}", "--no-cache")
        assert proc.returncode == 0, proc.stderr
        outs.append(_result(tmp_path, f"scaled[scale={float(scale)}]"))
    for other in outs[1:]:
        assert other["settings"] == outs[0]["settings"]
        assert other["per_query"]["AP"] == outs[0]["per_query"]["AP"]


def test_all_zero_vectors_are_a_warning_in_the_result(fake_plugin_path, tmp_path):
    proc = _run(fake_plugin_path, tmp_path, "--model", "scaled", "--model-arg", "zero_corpus=true")
    assert proc.returncode == 0, proc.stderr
    result = _result(tmp_path, "scaled[zero_corpus=True]")
    assert any("all-zero vector(s)" in w and "candidates" in w for w in result["warnings"])
    assert "all-zero" in proc.stderr


# -- 2. the vector store is verified -------------------------------------------------------------------------------
def _shards(tmp_path) -> list:
    return sorted(p for p in (tmp_path / "cache" / "shards").glob("*/*/shard-*.json"))


def _corrupt(manifest, how: str) -> None:
    stem = manifest.name[: -len(".json")]
    vecs, ids = manifest.with_name(f"{stem}.vecs.npy"), manifest.with_name(f"{stem}.ids.npy")
    if how == "nan":
        arr = np.load(vecs)
        arr[0, 0] = np.nan
        np.save(vecs, arr)
    elif how == "zero-bytes":
        data = bytearray(vecs.read_bytes())
        data[-64:] = bytes(64)
        vecs.write_bytes(bytes(data))
    elif how == "random-bytes":
        data = bytearray(vecs.read_bytes())
        data[-64:] = np.random.default_rng(0).bytes(64)
        vecs.write_bytes(bytes(data))
    elif how == "reordered-ids":
        arr = np.load(ids)
        np.save(ids, arr[::-1].copy())
    elif how == "fifo":
        vecs.unlink()
        os.mkfifo(vecs)
    elif how == "wrong-dimension":  # a consistent shard (valid checksums) of another width
        from xlir_bench.fileio import crc32_chunks

        arr = np.load(vecs)[:, :3].copy()
        np.save(vecs, arr)
        info = json.loads(manifest.read_text())
        info.update(dim=3, vecs_bytes=vecs.stat().st_size, vecs_crc32=crc32_chunks(vecs.read_bytes()))
        manifest.write_text(json.dumps(info))
    elif how == "scaled-with-rewritten-manifest":  # vectors x2, checksums made to match: only the norm check sees it
        from xlir_bench.fileio import crc32_chunks

        np.save(vecs, np.load(vecs) * 2)
        info = json.loads(manifest.read_text())
        info.update(vecs_bytes=vecs.stat().st_size, vecs_crc32=crc32_chunks(vecs.read_bytes()))
        manifest.write_text(json.dumps(info))
    else:
        raise ValueError(how)


CORRUPTIONS = ("nan", "zero-bytes", "random-bytes", "reordered-ids", "fifo", "wrong-dimension",
               "scaled-with-rewritten-manifest")  # fmt: skip


def test_corrupt_shards_are_discarded_and_reencoded_in_the_same_run(fake_plugin_path, tmp_path):
    """Seven kinds of damage, one per corpus shard: the re-run reports each, encodes it again, and gives the same
    numbers; the run after that reads everything from the store."""
    first = _run(fake_plugin_path, tmp_path, "--model", "hash-int")
    assert first.returncode == 0, first.stderr
    baseline = _result(tmp_path, "hash-int")
    shards = [
        m for m in _shards(tmp_path) if json.loads((m.parent / "corpus.json").read_text())["corpus"]["kind"] == "corpus"
    ]
    assert len(shards) >= len(CORRUPTIONS)
    for manifest, how in zip(shards, CORRUPTIONS):
        _corrupt(manifest, how)
    second = _run(fake_plugin_path, tmp_path, "--model", "hash-int")
    assert second.returncode == 0, second.stderr
    again = _result(tmp_path, "hash-int")
    assert again["settings"] == baseline["settings"]
    assert again["per_query"] == baseline["per_query"]
    assert sum("discarded cached shard" in w for w in again["warnings"]) == len(CORRUPTIONS), again["warnings"]
    third = _run(fake_plugin_path, tmp_path, "--model", "hash-int")  # healed: everything from the store
    assert third.returncode == 0
    assert not [w for w in _result(tmp_path, "hash-int")["warnings"] if "shard" in w]


def test_cache_identity_follows_the_plugin_source(tmp_path, monkeypatch):
    """Editing a plugin's code (same version, same revision) gives another cache identity."""
    from xlir_bench.runner import plugin_source_digest

    (tmp_path / "edited_plugin.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = plugin_source_digest("edited_plugin:Thing")
    (tmp_path / "edited_plugin.py").write_text("VALUE = 2\n")
    assert plugin_source_digest("edited_plugin:Thing") != before != "unknown"
    pkg = tmp_path / "edited_pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "helper.py").write_text("A = 1\n")
    before = plugin_source_digest("edited_pkg:Thing")
    (pkg / "sub" / "helper.py").write_text("A = 2\n")
    assert plugin_source_digest("edited_pkg:Thing") != before


def test_unwritable_cache_falls_back_with_a_warning(fake_plugin_path, tmp_path):
    """XLIR_BENCH_CACHE naming a file: the run goes on with a temporary store, and says so."""
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("x")
    proc = run_cli(
        "run", "--model", "hash-int", "--suite", "mlqa-r", "--setting", "multilingual", "--quiet",
        "--results-dir", str(tmp_path / "results"),
        env_extra={"PYTHONPATH": str(fake_plugin_path), "XLIR_BENCH_CACHE": str(blocker)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "vector cache switched off" in proc.stderr
    assert _result(tmp_path, "hash-int")["settings"]["multilingual"]["metrics"]["mAP"] > 0


def test_disk_full_in_the_store_is_one_line_naming_the_file(tmp_path, monkeypatch):
    """Disk full (or a file too large) while a shard is written: one error naming the file and what to do, and no
    partial file left behind."""
    from xlir_bench import fileio
    from xlir_bench.shards import ShardStore

    def full(fd):
        raise OSError(28, "No space left on device")

    store = ShardStore(tmp_path, {"model": "m"}, {"corpus": "c"})
    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(XlirError, match=r"cannot write .*No space left on device.*free some space"):
        store.write(0, ["a"], np.ones((1, 4), dtype=np.float32))
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def test_concurrent_runs_store_each_vector_once(fake_plugin_path, tmp_path):
    env = {**os.environ, **_env(fake_plugin_path, tmp_path)}
    cmd = [sys.executable, "-m", "xlir_bench.cli", "run", "--model", "hash-int", "--suite", "mlqa-r"]
    cmd += ["--setting", "multilingual", "--quiet"]
    procs = [
        subprocess.Popen([*cmd, "--results-dir", str(tmp_path / f"r{i}")], env=env, stderr=subprocess.PIPE)
        for i in range(2)
    ]
    assert all(p.wait() == 0 for p in procs)
    result = results.read_result(tmp_path / "r0" / "mlqa-r" / "hash-int.json")
    (entry,) = cache.entries(tmp_path / "cache")
    texts = result["suite"]["queries"] + result["suite"]["documents"]
    assert entry.vectors <= texts  # unique texts may be fewer (duplicate sentences share a key)
    assert entry.bad_shards == 0
    assert results.read_result(tmp_path / "r1" / "mlqa-r" / "hash-int.json")["settings"] == result["settings"]


def test_cache_info_and_clear_see_the_store_and_damaged_folders(tmp_path):
    """``cache info`` counts the store's vectors (issue: it said 0.0 MiB while shards/ held data), damaged or
    unfinished shards, and the folders of the old embedding cache; ``cache clear`` removes them."""
    from xlir_bench.shards import ShardStore

    store = ShardStore(tmp_path, {"model": "m", "metadata": {"revision": "r"}}, {"corpus": "c"})
    store.write(0, ["a", "b", "c"], np.ones((3, 4), dtype=np.float32))
    store.write(1, ["d"], np.ones((1, 4), dtype=np.float32))
    (store.folder / "shard-000009.vecs.npy").write_bytes(b"junk")  # a shard with no manifest
    (tmp_path / "embeddings" / "old").mkdir(parents=True)
    (entry, legacy) = cache.entries(tmp_path)
    assert (entry.model, entry.revision, entry.vectors, entry.bad_shards) == ("m", "r", 4, 1)
    assert entry.bytes > 0 and legacy.legacy
    (store.folder.parent / "identity.json").unlink()
    assert not cache.entries(tmp_path)[0].identity_ok
    assert cache.clear(tmp_path) == (2, []) and cache.entries(tmp_path) == []


HOLD = """
import sys, time
from pathlib import Path
from xlir_bench.shards import in_use
with in_use(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_cache_clear_leaves_alone_what_a_running_run_holds(tmp_path, monkeypatch):
    """``cache clear`` removed the store a running evaluation was writing (it happened here, to a confirmatory run).
    A run now holds its model's folder (a shared lock the OS drops when the process ends); clearing skips a held
    folder and says so, ``cache info`` marks it, and once the run has ended the same command removes it."""
    import subprocess
    import sys

    from click.testing import CliRunner

    from xlir_bench.cli import cli
    from xlir_bench.shards import ShardStore

    stores = [ShardStore(tmp_path, {"model": m, "metadata": {"revision": "r"}}, {"corpus": "c"}) for m in "mn"]
    for store in stores:
        store.write(0, ["a"], np.ones((1, 4), dtype=np.float32))
    busy = stores[0].folder.parent
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(busy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert {e.model for e in cache.entries(tmp_path) if e.in_use} == {"m"}
        info = run_cli("cache", "info", env_extra={"XLIR_BENCH_CACHE": str(tmp_path), "COLUMNS": "80"})
        assert info.returncode == 0 and max(map(len, info.stdout.splitlines())) <= 80
        models = " ".join(line.split("│")[1].strip() for line in info.stdout.splitlines() if line.startswith("│"))
        assert models == "m (in use by a running run) n"  # folded if need be, never cut
        monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path))
        result = CliRunner().invoke(cli, ["cache", "clear", "--yes"])
        assert result.exit_code == 0 and "removed 1 model folder(s)" in result.output
        assert "left 1 in use by a running run (m)" in result.output
        assert stores[0].has(0) and not stores[1].has(0)
    finally:
        holder.kill()
        holder.wait()
    assert cache.clear(tmp_path) == (1, []) and cache.entries(tmp_path) == []


def test_a_run_that_stored_nothing_leaves_no_folder(tmp_path):
    """The lock's folder is made before anything is stored; a run that fails first must not leave an empty model
    folder behind for ``cache info`` to list as '(no identity)'."""
    from xlir_bench.shards import identity_folder, in_use

    folder = identity_folder(tmp_path, {"model": "m"})
    with pytest.raises(RuntimeError):
        with in_use(folder):
            assert (folder / ".in-use").exists()
            raise RuntimeError("the plugin failed")
    assert not folder.exists() and cache.entries(tmp_path) == []


def test_a_file_system_without_flock_runs_unguarded(tmp_path, monkeypatch):
    """Lustre mounted without flock refuses the call (ENOLCK): the run goes on, as before the lock existed, and
    clearing works as it did then."""
    import errno
    from types import SimpleNamespace

    from xlir_bench import shards
    from xlir_bench.shards import ShardStore

    def refuse(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(shards, "fcntl", SimpleNamespace(flock=refuse, LOCK_SH=1, LOCK_EX=2, LOCK_NB=4))
    store = ShardStore(tmp_path, {"model": "m"}, {"corpus": "c"})
    with shards.in_use(store.folder.parent):
        store.write(0, ["a"], np.ones((1, 4), dtype=np.float32))
        assert not shards.held(store.folder.parent)
    assert cache.clear(tmp_path) == (1, []) and cache.entries(tmp_path) == []


def test_cache_clear_of_everything_asks_first_and_a_script_must_say_yes(tmp_path, monkeypatch):
    """``cache clear`` removed every stored vector without a word (a MIRACL corpus's can be GPU-hours; a session
    here lost its whole cache to one such call). Clearing everything now asks on a terminal, and without one is
    refused in one line unless ``--yes``; naming a model (or ``--broken``) is its own confirmation."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from click.testing import CliRunner

    from xlir_bench.cli import admin, cli
    from xlir_bench.shards import ShardStore

    for model in ("m", "n"):
        ShardStore(tmp_path, {"model": model, "metadata": {"revision": "r"}}, {"corpus": "c"}).write(
            0, ["a"], np.ones((1, 4), dtype=np.float32))  # fmt: skip
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "xlir_bench.cli", "cache", "clear"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("error: cache clear would remove all 2 model folder(s)")
    assert "pass --yes" in proc.stderr and len(cache.entries(tmp_path)) == 2
    monkeypatch.setattr(admin, "sys", SimpleNamespace(stdin=SimpleNamespace(isatty=lambda: True)))
    answered = CliRunner().invoke(cli, ["cache", "clear"], input="n\n")
    assert answered.exit_code == 0 and "nothing removed" in answered.output and len(cache.entries(tmp_path)) == 2
    assert CliRunner().invoke(cli, ["cache", "clear", "--model", "m"]).exit_code == 0
    from test_cli import one_line_error

    typo = run_cli("cache", "clear", "--model", "nn", env_extra={"XLIR_BENCH_CACHE": str(tmp_path)})
    one_line_error(typo, "no stored vectors of 'nn'", "models there: n (")  # it removed nothing, said "removed 0"
    assert [e.model for e in cache.entries(tmp_path)] == ["n"]
    assert CliRunner().invoke(cli, ["cache", "clear"], input="y\n").exit_code == 0 and cache.entries(tmp_path) == []


def test_result_file_names_never_collide():
    labels = ["hashgram[n=4]", "hashgram:[n=4]", "hashgram_n_4", "hashgram:ü", "hashgram", "hashgram:?", "e5-small"]
    stems = [results.file_stem(label) for label in labels]
    assert len(set(stems)) == len(labels)
    assert results.file_stem("e5-small") == "e5-small"
    assert all("/" not in s and not s.startswith(".") for s in stems)


def test_partial_rerun_keeps_the_other_settings(fake_plugin_path, tmp_path):
    full = _run(fake_plugin_path, tmp_path, "--model", "hash-int", setting=None)
    assert full.returncode == 0, full.stderr
    before = _result(tmp_path, "hash-int")
    mono = _run(fake_plugin_path, tmp_path, "--model", "hash-int", setting="monolingual")
    assert mono.returncode == 0 and "kept cross-lingual, multilingual" in mono.stderr, mono.stderr
    after = _result(tmp_path, "hash-int")
    assert after["settings"] == before["settings"]
    assert after["per_query"]["AP"] == before["per_query"]["AP"]
    assert set(after["provenance"]["carried_over"]) == {"cross-lingual", "multilingual"}
    other = _run(fake_plugin_path, tmp_path, "--model", "hash-int", "--model-arg", "dim=7", setting="monolingual")
    assert other.returncode == 0
    assert _result(tmp_path, "hash-int") == after  # another label, another file


# -- 5. plugins cannot end the harness quietly ----------------------------------------------------------------------
@pytest.mark.parametrize("code", ["0", "3"])
def test_plugin_calling_sys_exit_is_an_error(fake_plugin_path, tmp_path, code):
    proc = _run(fake_plugin_path, tmp_path, "--model", "exits", "--model-arg", f"code={code}")
    one_line_error(proc, "sys.exit", "exits")
    assert list((tmp_path / "results").rglob("*.json")) == []


# -- 6. result files are validated ----------------------------------------------------------------------------------
BAD_RESULTS = {
    "metric-string": lambda r: r["settings"]["multilingual"]["metrics"].update(mAP="0.5"),
    "model-string": lambda r: r.update(model="x"),
    "settings-list": lambda r: r.update(settings=[]),
    "metric-nan": lambda r: r["settings"]["multilingual"]["metrics"].update(mAP=float("nan")),
    "metric-bool": lambda r: r["settings"]["multilingual"]["metrics"].update(mAP=True),
}


def test_bad_result_files_are_skipped_and_the_rest_shown(fake_plugin_path, tmp_path):
    assert _run(fake_plugin_path, tmp_path, "--model", "hash-int").returncode == 0
    good = _result(tmp_path, "hash-int")
    folder = tmp_path / "results" / "mlqa-r"
    for name, damage in BAD_RESULTS.items():
        doc = json.loads(json.dumps(good))
        damage(doc)
        (folder / f"{name}.json").write_text(json.dumps(doc))  # Python writes NaN unless told not to
    os.mkfifo(folder / "fifo.json")
    (folder / "zero.json").symlink_to("/dev/zero")
    for fmt in ("json", "table", "markdown"):
        proc = run_cli("leaderboard", "--results-dir", str(tmp_path / "results"), "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.count("skipped") == len(BAD_RESULTS) + 2, proc.stderr
        if fmt == "json":
            records = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))
            assert [r["model"] for r in records] == ["hash-int"]


def test_result_with_nan_is_never_written(tmp_path):
    doc = {"model": {"name": "m"}, "suite": {"name": "s"}, "settings": {"x": {"metrics": {"mAP": float("nan")}}}}
    with pytest.raises(XlirError, match="NaN"):
        results.dumps_result(doc)


# -- 7. problems found before the compute ---------------------------------------------------------------------------
@pytest.mark.parametrize("what", ["object", "nan"])
def test_metadata_that_is_not_json_fails_before_encoding(fake_plugin_path, tmp_path, what):
    proc = _run(fake_plugin_path, tmp_path, "--model", "bad-meta", "--model-arg", f"what={what}")
    one_line_error(proc, "metadata cannot be written")


def test_typo_in_a_later_model_is_found_first(fake_plugin_path, tmp_path):
    proc = _run(fake_plugin_path, tmp_path, "--model", "hash-int", "--model", "hash-itn")
    one_line_error(proc, "unknown model 'hash-itn'")
    assert not (tmp_path / "results" / "mlqa-r").exists()


def test_directory_in_place_of_the_result(fake_plugin_path, tmp_path):
    (tmp_path / "results" / "mlqa-r" / "hash-int.json").mkdir(parents=True)
    proc = _run(fake_plugin_path, tmp_path, "--model", "hash-int")
    one_line_error(proc, "hash-int.json", "directory is in the way")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_suite_folder(fake_plugin_path, tmp_path):
    folder = tmp_path / "results" / "mlqa-r"
    folder.mkdir(parents=True)
    folder.chmod(0o500)
    try:
        one_line_error(_run(fake_plugin_path, tmp_path, "--model", "hash-int"), "mlqa-r", "not writable")
    finally:
        folder.chmod(0o700)


# -- 9. values ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**40)], "--seed"),
        (["--model-arg", "x=" + "[" * 100_000], "--model-arg x"),
        (["--model-arg", "x=" + "-" * 5000 + "1"], "nested too deeply"),
    ],
)
def test_bad_run_values_are_one_line(tmp_path, args, fragment):
    proc = run_cli("run", "--model", "bm25", "--results-dir", str(tmp_path), "--quiet", *args)
    one_line_error(proc, fragment)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--alpha", "nan"], "--alpha"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "1e6"], "--lr"),
        (["--seed", "-1"], "--seed"),
        (["--langs", "en,xx"], "xx not in the training data"),
        (["--langs", ""], "names no language"),
        (["--langs", ","], "names no language"),
        (["--langs", "en", "--strategy", "cross"], "at least two languages"),
    ],
)
def test_bad_train_values_are_one_line(tmp_path, args, fragment):
    base = ["train", "--base", "e5-small", "--train-data", "mlqa-r", "--max-steps", "1", "--quiet"]
    if "--strategy" not in args:
        base += ["--strategy", "hybrid"]
    proc = run_cli(*base, *args, env_extra={"XLIR_BENCH_MODELS": str(tmp_path)})
    one_line_error(proc, fragment)
    assert list(tmp_path.iterdir()) == []


# -- 10. files that are not files -----------------------------------------------------------------------------------
def test_reads_refuse_fifos_devices_and_huge_files(tmp_path):
    fifo = tmp_path / "x.json"
    os.mkfifo(fifo)
    done = threading.Event()

    def attempt():
        for read in (read_bytes, lambda path: map_file(path, 1 << 20)):
            with pytest.raises(NotARegularFile):
                read(fifo)
        done.set()

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(10)
    assert done.is_set(), "reading a FIFO blocked"
    with pytest.raises(NotARegularFile):
        read_bytes("/dev/zero")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2048)
    with pytest.raises(NotARegularFile, match="limit"):
        read_bytes(big, limit=1024)
    with pytest.raises(NotARegularFile, match="limit"):
        map_file(big, limit=1024)
    assert bytes(map_file(big, limit=2048)) == b" " * 2048
    (tmp_path / "empty.npy").write_bytes(b"")
    assert map_file(tmp_path / "empty.npy", limit=0) == b""
    (tmp_path / "nan.json").write_text('{"a": NaN}')
    with pytest.raises(ValueError, match="NaN"):
        read_json(tmp_path / "nan.json")


# -- 12. plugin names and labels ------------------------------------------------------------------------------------
def test_builtin_names_cannot_be_taken_over(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "evil_plugins-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "evil_plugins.py").write_text("class Evil:\n    def __init__(self, **kw): pass\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[xlir_bench.models]\nbm25 = evil_plugins:Evil\n")
    monkeypatch.syspath_prepend(str(site))
    (ep, _) = plugins.find_entry_point("bm25")
    assert ep.value == "xlir_bench.models.bm25:BM25"
    (info_bm25,) = [i for i in plugins.discover(check=False) if i.name == "bm25"]
    assert info_bm25.shadows == ["evil-plugins 1.0 -> evil_plugins:Evil"]
    proc = run_cli("models", env_extra={"PYTHONPATH": str(site)})
    assert proc.returncode == 0 and "also registered (not used)" in proc.stdout and "evil" in proc.stdout


def test_labels_with_markup_and_pipes_render_in_every_format():
    record = {"model": "m|x[dtype=int8]", "suite": "s", "setting": "multilingual", "mAP": 0.5}
    report = Report([record])
    md = report.render("markdown").splitlines()
    assert "m\\|x[dtype=int8]" in md[2] and md[2].count(" | ") == md[0].count(" | ")
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(report.rich_table())
    assert "m|x[dtype=int8]" in console.export_text()


def test_cached_vectors_of_another_width_are_cleared_not_blamed_on_the_plugin(tmp_path, monkeypatch):
    """A plugin changed its dimension without changing its revision: the stale vectors go, with one line."""
    from xlir_bench.plugins import from_object
    from xlir_bench.runner import evaluate
    from xlir_bench.suites.records import SuiteData, SuiteDoc, SuiteQrel, SuiteQuery

    class Plugin:
        metadata = {"name": "width", "revision": "r1"}
        dim = 3

        def encode_queries(self, texts, *, language, batch_size):
            return np.ones((len(texts), self.dim))

        def encode_corpus(self, docs, *, language, batch_size):
            return np.ones((len(docs), self.dim))

    def suite(langs):
        docs = [SuiteDoc(f"{lang}-d", "t", "", "", lang) for lang in langs]
        queries = [SuiteQuery(f"{lang}-q", "q", lang, "q") for lang in langs]
        qrels = [SuiteQrel(q.query_id, d.doc_id, 1) for q in queries for d in docs]
        return SuiteData.from_records("toy", langs, docs, queries, qrels)

    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path))
    plugin = Plugin()
    model = from_object(plugin, "width", "tests:Plugin")
    evaluate(model, suite(["en"]), device="cpu", batch_size=8)
    plugin.dim = 4
    with pytest.raises(XlirError, match="dimension 3.*now returns 4.*removed"):
        evaluate(model, suite(["en", "de"]), device="cpu", batch_size=8)
    result, _ = evaluate(model, suite(["en", "de"]), device="cpu", batch_size=8)
    assert result["settings"]["multilingual"]["metrics"]["mAP"] == 1.0


def test_miracl_corpus_read_twice_refused_and_offline_download_is_one_line(tmp_path, monkeypatch):
    """A decompressed copy beside the .gz would feed every passage twice; a corpus ir_datasets cannot download
    (no network) ends in one line naming the folder to fill, not in an internal ConnectionError."""
    import gzip

    import requests

    from xlir_bench.errors import XlirError
    from xlir_bench.suites import miracl

    folder = tmp_path / "miracl" / "sw" / "corpus"
    folder.mkdir(parents=True)
    line = '{"docid": "1#0", "title": "t", "text": "x"}\n'
    (folder / "docs-0.jsonl").write_text(line)
    with gzip.open(folder / "docs-0.jsonl.gz", "wt") as handle:
        handle.write(line)
    with pytest.raises(XlirError, match=r"docs-0.jsonl.gz and its decompressed copy docs-0.jsonl: the corpus would"):
        miracl.corpus("sw", tmp_path)
    (folder / "docs-0.jsonl").unlink()
    assert [d[0] for d in miracl.corpus("sw", tmp_path)] == ["1#0"]

    class Offline:
        def docs_iter(self):
            raise requests.ConnectionError("Max retries exceeded")
            yield  # pragma: no cover

    monkeypatch.setattr(miracl, "_irds_dataset", lambda name: Offline())
    monkeypatch.setattr(miracl, "reachable", lambda url: True)  # reachable, and the download fails all the same
    with pytest.raises(XlirError, match=r"no MIRACL sw corpus: put its files .* \(ConnectionError\)"):
        list(miracl.Corpus("sw", None))
    monkeypatch.setattr(miracl, "reachable", lambda url: False)  # offline: said at once, before any retry
    with pytest.raises(XlirError, match=r"no MIRACL sw corpus: put its files .* \(its download site is unreachable\)"):
        list(miracl.Corpus("sw", None))


def test_miracl_topics_offline_are_one_line_at_once_and_a_cached_copy_needs_no_network(tmp_path, monkeypatch):
    """Without a data folder, MIRACL's dev topics come from ir_datasets: offline, that used to print its retry log
    lines and then requests' whole ConnectionError, without saying what to do. Now an unreachable site is said at
    once (ir_datasets is not even asked), a failing download ends in the same one line, and topics already in
    ir_datasets' cache are read without asking the network."""
    import requests

    from xlir_bench.errors import XlirError
    from xlir_bench.suites import miracl

    home = tmp_path / "irds"
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("XLIR_BENCH_DATA", raising=False)
    asked = []

    class Offline:
        def queries_iter(self):
            raise requests.ConnectionError("Max retries exceeded with url: /datasets/macavaney/miracl-noauth/...")
            yield  # pragma: no cover

        qrels_iter = queries_iter

    def dataset(name):
        asked.append(name)
        return Offline()

    monkeypatch.setattr(miracl, "_irds_dataset", dataset)
    monkeypatch.setattr(miracl, "reachable", lambda url: False)
    with pytest.raises(XlirError, match=r"^no MIRACL sw dev topics/qrels: set XLIR_BENCH_DATA .*miracl/sw/dev/"
                       r"topics.tsv .* \(their download site is unreachable\)$"):  # fmt: skip
        miracl.load_topics("sw")
    assert asked == []
    monkeypatch.setattr(miracl, "reachable", lambda url: True)  # reachable, and the download fails all the same
    with pytest.raises(XlirError, match=r"^no MIRACL sw dev topics/qrels: .* \(ConnectionError\)$"):
        miracl.load_topics("sw")
    assert asked == ["miracl/sw/dev"]
    for what in ("topics", "qrels"):  # in ir_datasets' cache: no reachability question
        path = home / "miracl" / miracl._irds_downloads()[f"v1.0/sw/dev/{what}"]["cache_path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    monkeypatch.setattr(miracl, "reachable", lambda url: pytest.fail("asked the network"))
    with pytest.raises(XlirError, match=r"\(ConnectionError\)$"):  # the stand-in dataset still fails; not asked first
        miracl.load_topics("sw")
    assert asked == ["miracl/sw/dev"] * 2


def test_ir_datasets_own_corpus_copy_is_checksummed_and_named_in_the_result(tmp_path, monkeypatch, fake_plugin_path):
    """A corpus in ir_datasets' cache (``IR_DATASETS_HOME``) used to be read unchecked and recorded only as
    ``ir_datasets:miracl/<lang>``: now its files are read like a local folder, keyed by their md5, and the result
    says where they came from and that they are not the official files."""
    from miracl_fixture import write_corpus

    from xlir_bench import plugins
    from xlir_bench.runner import evaluate
    from xlir_bench.suites import miracl

    fixture = write_corpus(DATA, tmp_path / "fixture", "yo", distractors=30, files=1, seed=5)
    home = tmp_path / "irds"
    (cache_path,) = [v["cache_path"] for k, v in miracl._irds_downloads().items() if k.startswith("v1.0/yo/corpus/")]
    (home / "miracl" / cache_path).parent.mkdir(parents=True)
    (fixture / "miracl" / "yo" / "corpus" / "docs-0.jsonl.gz").rename(home / "miracl" / cache_path)
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(fake_plugin_path))
    corpus = miracl.corpus("yo", fixture)  # the data folder has the topics, ir_datasets' cache the corpus
    assert corpus.files == [home / "miracl" / cache_path] and corpus.source == "ir_datasets cache"
    result, _ = evaluate(plugins.load_model("hash-int", device="cpu"), miracl.load(("yo",), fixture), device="cpu",
                         batch_size=16, settings=("monolingual",))  # fmt: skip
    recorded = result["suite"]["corpus"]["yo"]
    assert recorded["source"] == "ir_datasets cache" and recorded["official"] is False and recorded["files"]


def test_a_result_on_an_unofficial_corpus_says_so_in_every_table():
    from xlir_bench.report import Report

    doc = {"model": {"name": "bm25", "metadata": {}}, "engine": "engine-1",
           "suite": {"name": "miracl-sw", "corpus": {"sw": {"files": {"docs-0.jsonl": "abc"}, "official": False}}},
           "settings": {"monolingual": {"metrics": {"mAP": 0.5}}}}  # fmt: skip
    (record,) = Report.from_results([doc]).records
    assert record["set"] == "official: false (sw)"
    doc["suite"]["notes"] = {"relevant_not_in_corpus": 1234}
    assert Report.from_results([doc]).records[0]["set"] == "official: false (sw), 1,234 relevant not in corpus"
    doc["suite"]["corpus"]["sw"]["official"] = True
    doc["suite"]["notes"] = {"relevant_not_in_corpus": 0}
    assert "set" not in Report.from_results([doc]).records[0]
