"""The trainer on a tiny random BERT: loss goes down, checkpoints resume exactly, trained models become plugins."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import make_tiny_bert  # noqa: E402

from xlir_bench.errors import XlirError  # noqa: E402
from xlir_bench.plugins import load_model  # noqa: E402
from xlir_bench.training import data as training_data  # noqa: E402
from xlir_bench.training.loss import info_nce  # noqa: E402
from xlir_bench.training.trainer import TrainConfig, Trainer  # noqa: E402


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-base"), layers=1)


@pytest.fixture(scope="module")
def small_parallel(mlqa):
    parallel = training_data.from_suite(mlqa, ["en", "de", "es"])
    parallel.groups = [g for g in parallel.groups if len(g.languages) == 3][:120]
    return parallel


def config(base, **over) -> TrainConfig:
    values = dict(
        base="tiny", base_path=str(base), strategy="hybrid", batch_size=8, max_steps=12, lr=1e-3, max_length=32,
        eval_every=4, checkpoint_every=4, patience=10, validation_batches=2, seed=0,
    )  # fmt: skip
    values.update(over)
    return TrainConfig(**values)


def test_info_nce_prefers_matching_pairs():
    q = torch.eye(4)
    assert float(info_nce(q, q)) < float(info_nce(q, q.flip(0)))


def test_training_lowers_the_loss_and_writes_a_card(tiny_base, small_parallel, tmp_path):
    card = Trainer(config(tiny_base, max_steps=24), small_parallel, tmp_path / "m").train()
    assert card["steps"] == 24 and len(card["losses"]) == 24
    assert np.mean(card["losses"][-6:]) < np.mean(card["losses"][:6])
    assert card["validation_curve"] and card["strategy"] == "hybrid" and card["train_groups"] == 108
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "card.json").is_file()
    assert 0 <= card["sampler_share_of_step_time"] < 0.05


def test_resume_after_a_kill_gives_the_same_model(tiny_base, small_parallel, tmp_path):
    straight = Trainer(config(tiny_base), small_parallel, tmp_path / "straight").train()

    class Killed(Exception):
        pass

    first = Trainer(config(tiny_base), small_parallel, tmp_path / "resumed")
    original = first.save_checkpoint

    def save_then_die():
        original()
        if first.step == 8:
            raise Killed

    first.save_checkpoint = save_then_die
    with pytest.raises(Killed):
        first.train()
    descriptions: list[str] = []
    progress = SimpleNamespace(
        add_task=lambda *a, **k: 0, update=lambda task, **k: descriptions.append(k["description"])
    )
    trainer = Trainer(config(tiny_base), small_parallel, tmp_path / "resumed", progress=progress)
    resumed = trainer.train()
    assert resumed["resumed"] and resumed["steps"] == 12
    # the bar's rate counts the 4 steps this process took, not the 8 before the kill
    rate = float(descriptions[-1].rsplit(", ", 1)[1].split()[0])
    assert rate == pytest.approx(4 / trainer.step_seconds, rel=0.02, abs=0.01)
    np.testing.assert_allclose(resumed["losses"], straight["losses"], rtol=1e-5, atol=1e-6)


def test_trained_model_becomes_a_plugin(tiny_base, small_parallel, tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_BENCH_MODELS", str(tmp_path))
    with pytest.raises(XlirError, match="xlir-bench train --base e5-small --strategy hybrid"):
        load_model("hybrid-e5-small", device="cpu")
    Trainer(config(tiny_base, max_steps=4), small_parallel, tmp_path / "hybrid-e5-small").train()
    model = load_model("hybrid-e5-small", device="cpu")
    assert model.metadata["training"]["strategy"] == "hybrid"
    assert model.plugin.encode_queries(["hello"], language="en", batch_size=1).shape == (1, 32)
    card = json.loads((tmp_path / "hybrid-e5-small" / "card.json").read_text())
    assert card["versions"]["torch"]


def test_ddp_two_processes_keep_identical_weights(tiny_base, tmp_path):
    """torchrun, gloo backend, 2 CPU processes: after a few steps both ranks hold the same weights."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", str(worker), str(tiny_base), str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 3
    assert ranks[0]["digest"] == ranks[1]["digest"]
    card = json.loads((tmp_path / "model" / "card.json").read_text())
    assert card["world_size"] == 2


def test_freeze_embeddings_keeps_the_token_matrix(tiny_base, small_parallel, tmp_path):
    trainer = Trainer(config(tiny_base, max_steps=3, freeze_embeddings=True), small_parallel, tmp_path / "f")
    before = trainer.model.get_input_embeddings().weight.detach().clone()
    layer_before = trainer.model.encoder.layer[0].output.dense.weight.detach().clone()
    trainer.train()
    assert torch.equal(trainer.model.get_input_embeddings().weight, before)
    assert not torch.equal(trainer.model.encoder.layer[0].output.dense.weight, layer_before)


def test_finished_model_is_not_overwritten(tiny_base, small_parallel, tmp_path):
    Trainer(config(tiny_base, max_steps=2), small_parallel, tmp_path / "done").train()
    assert not (tmp_path / "done" / "checkpoint").exists()
    with pytest.raises(XlirError, match="already holds a trained model"):
        Trainer(config(tiny_base, max_steps=2), small_parallel, tmp_path / "done").train()


def test_device_and_precision_choices():
    from xlir_bench.training.trainer import autocast_dtype, training_device

    cpu = training_device(torch, "cpu")
    assert cpu.type == "cpu"
    assert autocast_dtype(torch, cpu, "auto") is None and autocast_dtype(torch, cpu, "fp32") is None
    assert autocast_dtype(torch, cpu, "bf16") is torch.bfloat16
    with pytest.raises(XlirError, match="unknown precision 'fp8'"):
        autocast_dtype(torch, cpu, "fp8")
    if not torch.cuda.is_available():
        with pytest.raises(XlirError, match="no CUDA GPU is available"):
            training_device(torch, "cuda")


def test_bf16_autocast_training_records_its_device(tiny_base, small_parallel, tmp_path):
    """The autocast path (bf16 on GPUs by default) trains too; the loss stays fp32 and finite."""
    settings = config(tiny_base, max_steps=4, precision="bf16", device="cpu")
    card = Trainer(settings, small_parallel, tmp_path / "m").train()
    assert card["autocast"] == "bfloat16" and card["device_used"].startswith("cpu")
    assert all(np.isfinite(card["losses"])) and card["train_seconds"] > 0


# -- refusals (issue 8, class 3 and 11 of docs/RELIABILITY.md) -------------------------------------------------------
class Killed(Exception):
    pass


def _killed_at(trainer: Trainer, step: int) -> Trainer:
    original = trainer.save_checkpoint

    def save_then_die():
        original()
        if trainer.step == step:
            raise Killed

    trainer.save_checkpoint = save_then_die
    return trainer


def test_non_finite_loss_stops_training_and_saves_nothing(tiny_base, small_parallel, tmp_path, monkeypatch):
    from xlir_bench.training import trainer as trainer_module

    real = trainer_module.info_nce
    calls = {"n": 0}

    def diverging(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(trainer_module, "info_nce", diverging)
    with pytest.raises(XlirError, match=r"training diverged: training loss is nan at step 3.*--lr"):
        Trainer(config(tiny_base), small_parallel, tmp_path / "m").train()
    assert not (tmp_path / "m" / "card.json").exists() and not (tmp_path / "m" / "model.safetensors").exists()


@pytest.mark.parametrize("change", [{"lr": 2e-3}, {"strategy": "cross"}, {"max_length": 16}])
def test_resume_with_another_configuration_is_refused(tiny_base, small_parallel, tmp_path, change):
    with pytest.raises(Killed):
        _killed_at(Trainer(config(tiny_base), small_parallel, tmp_path / "m"), 4).train()
    (key,) = change
    with pytest.raises(XlirError, match=rf"unfinished run with {key}="):
        Trainer(config(tiny_base, **change), small_parallel, tmp_path / "m").train()
    assert (tmp_path / "m" / "checkpoint" / "state.json").is_file()  # the old run is still resumable


def test_resume_from_another_trainer_version_is_refused(tiny_base, small_parallel, tmp_path):
    with pytest.raises(Killed):
        _killed_at(Trainer(config(tiny_base), small_parallel, tmp_path / "m"), 4).train()
    state_path = tmp_path / "m" / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    state["trainer_version"] = 1
    state_path.write_text(json.dumps(state))
    with pytest.raises(XlirError, match="trainer version 1"):
        Trainer(config(tiny_base), small_parallel, tmp_path / "m").train()


def test_kill_while_swapping_checkpoints_loses_nothing(tiny_base, small_parallel, tmp_path):
    """A kill after the old checkpoint was moved aside, before the new one was renamed into place."""
    with pytest.raises(Killed):
        _killed_at(Trainer(config(tiny_base), small_parallel, tmp_path / "m"), 8).train()
    out = tmp_path / "m"
    (out / "checkpoint").rename(out / ".checkpoint.tmp")  # the complete new one, not yet renamed
    resumed = Trainer(config(tiny_base), small_parallel, out)
    assert resumed.resume() and resumed.step == 8


def test_two_trainings_of_one_name_do_not_collide(tiny_base, small_parallel, tmp_path):
    from xlir_bench.training.trainer import folder_lock

    (tmp_path / "m").mkdir()
    with folder_lock(tmp_path / "m"):
        with pytest.raises(XlirError, match="another training is writing"):
            Trainer(config(tiny_base), small_parallel, tmp_path / "m").train()


def test_card_is_strict_json_with_the_trainer_version(tiny_base, small_parallel, tmp_path):
    from xlir_bench.fileio import read_json
    from xlir_bench.training.trainer import TRAINER_VERSION

    Trainer(config(tiny_base, max_steps=4), small_parallel, tmp_path / "m").train()
    assert read_json(tmp_path / "m" / "card.json")["trainer_version"] == TRAINER_VERSION
