"""The encoding feed (tokenize, plan, pad on a background thread): same vectors as encoding window by window,
truncation and out-of-memory said in the result, errors of the producer raised in the caller."""

from __future__ import annotations

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import make_tiny_bert  # noqa: E402

from xlir_bench import api  # noqa: E402
from xlir_bench.errors import XlirError  # noqa: E402
from xlir_bench.models import feed  # noqa: E402
from xlir_bench.plugins import load_model  # noqa: E402
from xlir_bench.suites.records import SuiteData, SuiteDoc, SuiteQrel, SuiteQuery  # noqa: E402

WORDS = "the panthers defense gave up just points ranking sixth in league while also leading nfl".split()


def texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert-feed"), layers=1)


def plugin(tiny, **options):
    return load_model(f"hf:{tiny}", device="cpu", options={"dtype": "fp32", **options}).plugin


@pytest.mark.parametrize("side", ["right", "left"])
def test_collate_equals_the_tokenizers_own_padding(tiny, side):
    encoder = plugin(tiny)
    encoder.load()
    tokenizer = encoder.tokenizer
    tokenizer.padding_side = side
    ids = tokenizer(texts(9))["input_ids"]
    rows = np.array([4, 0, 7, 2])
    tokens, mask = feed.collate(ids, rows, tokenizer.pad_token_id, side)
    padded = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="np")
    assert np.array_equal(tokens, padded["input_ids"]) and np.array_equal(mask, padded["attention_mask"])


def test_the_pipelined_whole_call_gives_the_vectors_of_window_by_window_calls(tiny, monkeypatch):
    """The engine used to call a plugin per 2,048 texts; the feed plans batches per window of that size, so one
    whole-shard call must give bit-identical vectors (and in the callers' order)."""
    monkeypatch.setattr(feed, "WINDOW", 16)
    encoder, many = plugin(tiny), texts(70)
    done = []
    whole = encoder.encode(many, batch_size=4, progress=done.append)
    by_window = np.concatenate([encoder.encode(many[lo : lo + 16], batch_size=4) for lo in range(0, 70, 16)])
    assert np.array_equal(whole, by_window) and sum(done) == 70
    alone = np.stack([encoder.encode([t], batch_size=1)[0] for t in many[:5]])
    np.testing.assert_allclose(whole[:5], alone, atol=1e-5)  # rows land where their texts were


@pytest.mark.parametrize("side", ["right", "left"])
def test_the_rust_core_gives_the_ids_and_truncation_counts_of_the_tokenizer_call(tiny, side):
    """The feed calls the Rust encoder directly (no per-text Python on one core); same ids, same count of cut texts,
    either truncation side, and the tokenizer is left as its own call leaves it."""
    encoder = plugin(tiny)
    encoder.load()
    tokenizer = encoder.tokenizer
    tokenizer.truncation_side = side
    many = texts(60, seed=5) + ["[SEP] the [MASK] nfl " * 9, "", "ünïcödé  spaced\tout\n text"]
    tokenizer(many[:3], truncation=True, max_length=40, padding=True)  # a call with other settings before
    core = feed.rust_core(tokenizer)
    assert core is tokenizer.backend_tokenizer
    direct, cut_direct = feed.tokenize(tokenizer, many, 16, core)
    after_direct = (core.truncation, core.padding, core.encode_special_tokens)
    wrapped, cut = feed.tokenize(tokenizer, many, 16)
    assert direct == wrapped and cut_direct == cut and 0 < cut < len(many)
    assert after_direct == (core.truncation, core.padding, core.encode_special_tokens)
    assert after_direct[0]["max_length"] == 16 and after_direct[0]["direction"] == side and after_direct[1] is None
    assert feed.Feed(tokenizer, many, max_length=16, budget=lambda: 64).core is core


def test_a_slow_tokenizer_has_no_rust_core():
    class Slow:
        pad_token_id = 0

    assert feed.rust_core(Slow()) is None


def test_the_rust_core_reads_every_real_paragraph_as_e5_smalls_tokenizer_does():
    """All XQuAD-R and MLQA-R paragraphs (11 + 7 languages, ~270 beyond 512 tokens) through e5-small's tokenizer."""
    from xlir_bench import suites

    tokenizer = load_model("e5-small", device="cpu").plugin
    tokenizer.load()
    tokenizer = tokenizer.tokenizer
    paragraphs = []
    for name in ("xquad-r", "mlqa-r"):
        data = suites.load(name)
        paragraphs += list(dict.fromkeys("passage: " + d.context for d in data.docs))
    for limit in (512, 128):
        wrapped, cut = feed.tokenize(tokenizer, paragraphs, limit)
        direct, cut_direct = feed.tokenize(tokenizer, paragraphs, limit, feed.rust_core(tokenizer))
        assert direct == wrapped and cut_direct == cut > 100


def producers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "xlir-bench-feed" and t.is_alive()]


def test_a_tokenizer_error_on_the_producer_thread_is_raised_to_the_caller_and_the_thread_ends(tiny):
    class Broken:
        pad_token_id, padding_side = 0, "right"

        def __call__(self, *args, **kwargs):
            raise ValueError("bad text")

    with pytest.raises(ValueError, match="bad text"):
        list(feed.Feed(Broken(), ["a", "b"], max_length=8, budget=lambda: 8))
    assert not producers()


def test_stopping_early_stops_the_producer(tiny):
    encoder = plugin(tiny)
    encoder.load()
    stream = iter(feed.Feed(encoder.tokenizer, texts(200), max_length=32, budget=lambda: 8, window=10, prefetch=1))
    next(stream)
    assert producers()
    stream.close()  # what happens when the consumer raises
    assert not producers()


def toy(long_query: str) -> SuiteData:
    """Two languages of four passages and four questions; passage 0 of each language and the first English question
    are far beyond 64 tokens."""
    docs = [SuiteDoc(f"{lang}-{i}", f"{lang} passage {i} " + ("long " * 600 if i == 0 else ""), "", "", lang)
            for lang in ("en", "de") for i in range(4)]  # fmt: skip
    queries = [SuiteQuery(f"{lang}-q{i}", f"{lang} question {i}", lang, f"q{i}") for lang in ("en", "de")
               for i in range(4)]  # fmt: skip
    queries[0] = SuiteQuery("en-q0", long_query, "en", "q0")
    qrels = [SuiteQrel(q.query_id, f"{lang}-{q.group_id[1:]}", 1) for q in queries for lang in ("en", "de")]
    return SuiteData.from_records("toy", ["en", "de"], docs, queries, qrels)


def test_truncated_texts_are_counted_in_the_result_also_when_served_from_the_store(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path))
    suite = toy("what " * 900)
    model = load_model(f"hf:{tiny}", device="cpu", options={"dtype": "fp32", "max_length": 64})
    first = api.evaluate(model, suite, settings=("multilingual",), batch_size=4, progress=False).document
    again = api.evaluate(model, suite, settings=("multilingual",), batch_size=4, progress=False).document
    said = sorted(w for w in first["warnings"] if "truncated" in w)
    assert said == [
        "1 of 4 de passages were longer than the model's maximum input (64 tokens) and were truncated",
        "1 of 4 en passages were longer than the model's maximum input (64 tokens) and were truncated",
        "1 of 4 en queries were longer than the model's maximum input (64 tokens) and were truncated",
    ]
    assert again["provenance"]["vectors"]["cached"] and sorted(w for w in again["warnings"] if "truncated" in w) == (
        sorted(said)
    )


class RunsOutOfMemory(torch.nn.Module):
    """A model that fails like a full GPU whenever a batch holds more than ``limit`` padded tokens."""

    def __init__(self, inner, limit):
        super().__init__()
        self.inner, self.limit, self.refused = inner, limit, 0

    def forward(self, input_ids, attention_mask):
        if input_ids.numel() > self.limit:
            self.refused += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


def test_out_of_memory_halves_the_token_budget_once_and_says_so(tiny):
    reference = plugin(tiny, max_tokens=64)
    many = texts(40, seed=3)
    expected = reference.encode(many, batch_size=4)
    encoder = plugin(tiny, max_tokens=128)
    encoder.load()
    encoder.model = RunsOutOfMemory(encoder.model, limit=100)
    got = encoder.encode(many, batch_size=4)
    np.testing.assert_allclose(got, expected, atol=1e-5)  # every text encoded, in its place
    assert encoder.model.refused == 1 and encoder.budget(4) == 64
    assert encoder.encoding_notes() == {"out_of_memory_halved_budget": 1}
    encoder.model.limit = 10  # still too much at the halved budget: one line naming the way out, no retry loop
    with pytest.raises(XlirError, match="out of device memory at 64 tokens per batch, after halving it once"):
        encoder.encode(many, batch_size=4)


def test_the_cuda_path_defers_copies_and_still_puts_every_vector_in_its_place(tiny, monkeypatch):
    """On CUDA the vectors of up to SYNC_EVERY batches stay on the device before one copy back; run here with the
    device calls stubbed (no GPU): the same vectors in the same rows, and progress in whole flushes."""
    from xlir_bench.models import transformers_encoder

    encoder, many = plugin(tiny, max_tokens=24), texts(90, seed=7)
    expected = encoder.encode(many, batch_size=4)
    monkeypatch.setattr(transformers_encoder, "SYNC_EVERY", 3)
    monkeypatch.setattr(feed.Feed, "_pinned", lambda self, *arrays: arrays)  # pinning needs a GPU
    forward = encoder._forward

    def on_the_cpu(batch):  # CPU tensors stand in for device ones
        encoder.device = "cpu"
        try:
            return forward(batch)
        finally:
            encoder.device = "cuda:0"

    monkeypatch.setattr(encoder, "_forward", on_the_cpu)
    encoder.device = "cuda:0"
    done = []
    got = encoder.encode(many, batch_size=4, progress=done.append)
    assert np.array_equal(got, expected) and sum(done) == 90
    assert len(done) < len(encoder.batches([len(x) for x in encoder.tokenizer(many)["input_ids"]], 4))


@pytest.mark.parametrize("gib,tokens", [(6, 8192), (16, 16384), (24, 16384), (80, 65536), (141, 131072), (640, 131072)])
def test_the_default_cuda_budget_grows_with_device_memory(monkeypatch, gib, tokens):
    from types import SimpleNamespace

    from xlir_bench.models import transformers_encoder

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=gib << 30))
    assert transformers_encoder.cuda_budget("cuda:0") == tokens


def test_on_cuda_the_default_budget_is_the_larger_of_the_rows_and_the_device_floor_and_results_say_which(
    tiny, monkeypatch
):
    from xlir_bench.models import transformers_encoder

    monkeypatch.setattr(transformers_encoder, "cuda_budget", lambda device: 65536)
    encoder = plugin(tiny)
    assert encoder.budget(32) == 32 * 32 and encoder.budget_rule() == "batch_size x 32"  # CPU: unchanged
    encoder.device = "cuda:0"
    assert encoder.budget(32) == 65536 and encoder.budget(1024) == 1024 * 128
    assert encoder.budget_rule() == "max(batch_size x 128, 65536)"
    assert plugin(tiny, max_tokens=4096).budget(32) == 4096  # the user's budget wins
