"""Run under torchrun by test_training.py: a few DDP steps, then each rank writes a digest of its weights."""

import hashlib
import json
import sys
from pathlib import Path

import torch

from xlir_bench.suites import load
from xlir_bench.training.data import from_suite
from xlir_bench.training.trainer import TrainConfig, Trainer

base, out = sys.argv[1], Path(sys.argv[2])
parallel = from_suite(load("mlqa-r"), ["en", "de", "es"])
parallel.groups = [g for g in parallel.groups if len(g.languages) == 3][:120]
config = TrainConfig(
    base="tiny", base_path=base, strategy="hybrid", batch_size=8, max_steps=3, lr=1e-3, max_length=32,
    eval_every=3, checkpoint_every=3, patience=10, validation_batches=1, seed=0,
)  # fmt: skip
trainer = Trainer(config, parallel, out / "model")
trainer.train()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in trainer.model.parameters())).hexdigest()
(out / f"rank{torch.distributed.get_rank()}.json").write_text(json.dumps({"digest": digest, "steps": trainer.step}))
