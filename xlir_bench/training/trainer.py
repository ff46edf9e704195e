"""Fine-tune a dual encoder (shared weights, mean pooling) with mono / cross / hybrid batches.

Optimisation follows arXiv 2408.10536: AdamW (lr 3e-5, weight decay 0.01), InfoNCE with in-batch negatives,
early stopping on a held-out validation loss. The validation batches are the same for every strategy (fixed mono
and fixed cross-lingual batches from held-out question groups, fixed seed, reported separately; checkpoints are
chosen on their mean), so the curves of the strategies compare.

Checkpoints (``<out>/checkpoint/``: weights, optimizer, step, losses, RNG) are written atomically every
``checkpoint_every`` steps; ``train()`` on an existing folder resumes where the checkpoint left off, so a killed
run loses at most those steps. The best model by validation loss is kept in ``<out>/`` with ``card.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import XlirError
from ..fileio import read_json, replace_dir, write_bytes
from .data import ParallelData
from .devices import _describe, autocast_dtype, training_device  # noqa: F401  (re-exported)
from .loss import info_nce
from .samplers import HybridBatchSampler, Pair

# Bumped whenever a change to the trainer, sampler or loss changes what a configuration trains; recorded in every
# card and checkpoint, and a model or checkpoint of another version is never reused or resumed.
# 1 (cards without a version): cross pairs drew both languages independently (some were same-language), validation
#   on hybrid batches. 3: cross pairs always have two different languages; validation on fixed mono and fixed
#   cross batches, reported separately, checkpoint selection on their mean.
TRAINER_VERSION = 3

# Fields that may differ when a killed run is resumed (where it runs, not what it trains).
RESUMABLE_DIFFERENCES = ("device",)


@dataclass
class TrainConfig:
    base: str
    base_path: str
    strategy: str
    alpha: float = 0.5
    alpha_schedule: str = "constant"  # hybrid only: constant, rising (0 -> 1 over max_steps) or falling
    alpha_draw: str = "exact"  # hybrid only: exactly round(alpha x max_steps) mono batches, or "coin" per batch
    batch_size: int = 32
    max_steps: int = 200
    lr: float = 3e-5
    weight_decay: float = 0.01
    max_length: int = 64
    scale: float = 20.0
    hard_negatives: bool = False
    freeze_embeddings: bool = False
    query_prefix: str = ""
    passage_prefix: str = ""
    seed: int = 0
    eval_every: int = 25
    patience: int = 4
    validation_fraction: float = 0.1
    validation_batches: int = 8
    checkpoint_every: int = 25
    data: str = ""
    languages: list[str] = field(default_factory=list)
    device: str = "auto"  # auto: this process's CUDA GPU when torch sees one (cuda:LOCAL_RANK under torchrun), else CPU
    precision: str = "auto"  # auto: bf16 autocast on a CUDA GPU that supports it, fp32 elsewhere; or fp32 / bf16


def _versions() -> dict:
    from ..provenance import package_versions, source_record

    source = source_record()
    return {**package_versions(), **({"xlir-bench source": source} if source else {})}


class Trainer:
    def __init__(self, config: TrainConfig, data: ParallelData, out: Path, progress=None) -> None:
        import torch
        from transformers import AutoTokenizer

        from ..models.sources import load_encoder_weights, quiet_transformers

        self.config, self.out, self.progress = config, Path(out), progress
        self.torch = torch
        self.device = training_device(torch, config.device)  # before the process group: NCCL wants the GPU set
        self.rank, self.world_size = _distributed_setup(torch)
        if self.rank != 0:
            self.progress = None
        self.autocast = autocast_dtype(torch, self.device, config.precision)
        torch.manual_seed(config.seed)
        self.train_data, self.val_data = data.split(config.validation_fraction, config.seed)
        with quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(config.base_path)
            self.model = load_encoder_weights(config.base_path).to(self.device)
        self.model.train()
        self.optimizer = self._optimizer()
        if config.batch_size % self.world_size:
            raise XlirError(f"--batch-size {config.batch_size} does not split over {self.world_size} processes")
        self.sampler = HybridBatchSampler(
            self.train_data, config.strategy, config.batch_size // self.world_size, alpha=config.alpha,
            seed=config.seed, rank=self.rank, world_size=self.world_size, schedule=config.alpha_schedule,
            total_steps=config.max_steps, draw=config.alpha_draw, block=config.eval_every,
        )  # fmt: skip
        self.engine = self._wrap(self.model)
        self.step, self.epoch = 0, 0
        self.losses: list[float] = []
        self.curve: list[dict] = []
        self.best = float("inf")
        self.best_step = 0
        self.stale = 0
        self.sampler_seconds = 0.0
        self.step_seconds = 0.0
        self.wall_seconds = 0.0

    # -- model ----------------------------------------------------------------------------------------------
    def embed(self, *groups: list[str]):
        """Mean-pooled embeddings of each group of texts; each group is padded to its own longest text."""
        batches = [
            self.tokenizer(texts, truncation=True, max_length=self.config.max_length, padding=True, return_tensors="pt")
            for texts in groups
            if texts
        ]
        batches = [{k: v.to(self.device) for k, v in batch.items()} for batch in batches]
        with self.torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            vectors = self.engine(batches)
        return [v.float() for v in vectors]  # the loss in fp32 whatever the forward ran in

    def batch_loss(self, pairs: list[Pair], data: ParallelData):
        cfg = self.config
        groups = [data.groups[p.group] for p in pairs]
        queries = [cfg.query_prefix + g.queries[p.query_language] for g, p in zip(groups, pairs)]
        passages = [cfg.passage_prefix + g.passages[p.passage_language] for g, p in zip(groups, pairs)]
        negatives: list[str] = []
        if cfg.hard_negatives:
            for g, p in zip(groups, pairs):
                pool = g.negatives.get(p.passage_language) or []
                which = (zlib.crc32(g.group_id.encode()) + self.step) % len(pool) if pool else 0
                negatives.append(cfg.passage_prefix + (pool[which] if pool else ""))
        # Queries, passages and negatives go through one module call (DistributedDataParallel expects one forward
        # per step) but are padded separately: short questions are not padded to passage length.
        vectors = self.embed(queries, passages, negatives)
        hard = vectors[2] if negatives else None
        return info_nce(vectors[0], vectors[1], hard, cfg.scale)

    def validation_losses(self) -> dict[str, float]:
        """InfoNCE on fixed validation batches, the same for every strategy: ``mono`` (one language per batch) and
        ``cross`` (every pair in two languages), each reported; ``mean`` of the two selects the checkpoint, so no
        strategy is validated on its own kind of batch only."""
        out = {}
        self.model.eval()
        with self.torch.inference_mode():
            for kind in ("mono", "cross"):
                try:
                    sampler = HybridBatchSampler(
                        self.val_data, kind, min(self.config.batch_size, len(self.val_data.groups)),
                        seed=12345, steps_per_epoch=self.config.validation_batches,
                    )  # fmt: skip
                except ValueError:  # e.g. one language only: no cross batches to validate on
                    continue
                out[kind] = float(np.mean([float(self.batch_loss(pairs, self.val_data)) for pairs in sampler]))
        self.model.train()
        out["mean"] = float(np.mean(list(out.values())))
        return out

    def _optimizer(self):
        """AdamW over the trainable weights. ``freeze_embeddings`` keeps the token embedding matrix fixed: for
        e5-small that is 96M of 118M parameters, whose dense AdamW update dominated a CPU step; the encoder
        layers, position embeddings and layer norms still train."""
        if self.config.freeze_embeddings:
            self.model.get_input_embeddings().weight.requires_grad_(False)
        params = [p for p in self.model.parameters() if p.requires_grad]
        try:  # the fused kernel (CPU and CUDA in current torch) is what transformers' Trainer uses by default
            return self.torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay, fused=True)
        except (RuntimeError, TypeError):
            return self.torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def _wrap(self, model):
        """The dual encoder, under DistributedDataParallel when torchrun launched several processes."""
        dual = _dual_encoder(self.torch)(model)
        if self.world_size == 1:
            return dual
        if self.device.type == "cuda":
            return self.torch.nn.parallel.DistributedDataParallel(dual, device_ids=[self.device.index])
        return self.torch.nn.parallel.DistributedDataParallel(dual)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _save_model(self, folder: Path) -> None:
        if self.rank != 0:
            return
        from ..models.sources import quiet_transformers

        tmp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with quiet_transformers():
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
        swap_in(tmp, folder)

    def save_checkpoint(self) -> None:
        if self.world_size > 1:
            self.torch.distributed.barrier()
        if self.rank != 0:
            return
        folder = self.out / "checkpoint"
        tmp = self.out / ".checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        from ..models.sources import quiet_transformers

        with quiet_transformers():
            self.model.save_pretrained(tmp / "model")
        self.torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        state = {
            "trainer_version": TRAINER_VERSION, "config": asdict(self.config),
            "step": self.step, "epoch": self.epoch, "losses": self.losses, "curve": self.curve,
            "best": self.best, "best_step": self.best_step, "stale": self.stale,
            "torch_rng": self.torch.get_rng_state().tolist(),
            "wall_seconds": self.wall_seconds + time.perf_counter() - self._started,
        }  # fmt: skip
        if self.device.type == "cuda":
            state["cuda_rng"] = self.torch.cuda.get_rng_state(self.device).tolist()
        (tmp / "state.json").write_text(json.dumps(state, allow_nan=False))  # last: marks the folder complete
        swap_in(tmp, folder)

    def resume(self) -> bool:
        found = latest_checkpoint(self.out)
        if found is None:
            return False
        folder, state = found
        self.check_resumable(state, folder)
        from ..models.sources import load_encoder_weights, quiet_transformers

        with quiet_transformers():
            self.model = load_encoder_weights(folder / "model").to(self.device)
        self.model.train()
        self.engine = self._wrap(self.model)
        self.optimizer = self._optimizer()
        optimizer_state = self.torch.load(folder / "optimizer.pt", weights_only=True, map_location=self.device)
        self.optimizer.load_state_dict(optimizer_state)
        self.step, self.epoch = state["step"], state["epoch"]
        self.losses, self.curve, self.best, self.stale = state["losses"], state["curve"], state["best"], state["stale"]
        self.best_step = state.get("best_step", 0)
        self.wall_seconds = state.get("wall_seconds", 0.0)
        self.torch.set_rng_state(self.torch.tensor(state["torch_rng"], dtype=self.torch.uint8))
        if self.device.type == "cuda" and state.get("cuda_rng"):
            self.torch.cuda.set_rng_state(self.torch.tensor(state["cuda_rng"], dtype=self.torch.uint8), self.device)
        return True

    def check_resumable(self, state: dict, folder: Path) -> None:
        """Refuse to continue a checkpoint made by other trainer code or with another configuration: the run
        would silently train the old configuration and write a card claiming the new one."""
        if state.get("trainer_version") != TRAINER_VERSION:
            raise XlirError(
                f"{folder} was written by trainer version {state.get('trainer_version')!r} (this is "
                f"{TRAINER_VERSION}); delete {self.out} or choose another --name"
            )
        saved, wanted = state.get("config") or {}, asdict(self.config)
        differ = [
            f"{k}={saved.get(k)!r} (now {v!r})"
            for k, v in wanted.items()
            if k not in RESUMABLE_DIFFERENCES and saved.get(k) != v
        ]
        if differ:
            raise XlirError(
                f"{self.out} holds an unfinished run with {', '.join(differ)}; re-run with the same options to "
                "resume it, or choose another --name (or delete the folder) to start afresh"
            )

    # -- loop -----------------------------------------------------------------------------------------------
    def batches(self):
        """Endless batches, epoch after epoch, starting after those a resumed run has already trained on."""
        self.epoch, skip = divmod(self.step, len(self.sampler))
        while True:
            self.sampler.set_epoch(self.epoch)
            start = time.perf_counter()
            for pairs in self.sampler:
                self.sampler_seconds += time.perf_counter() - start
                if skip:
                    skip -= 1
                else:
                    yield pairs
                start = time.perf_counter()
            self.epoch += 1

    def train(self) -> dict:
        if (self.out / "card.json").is_file():
            raise XlirError(f"{self.out} already holds a trained model; choose another --name or delete it")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise XlirError(f"cannot create {self.out} ({exc.strerror or exc}); set XLIR_BENCH_MODELS") from None
        with folder_lock(self.out) if self.rank == 0 else _nothing():
            if (self.out / "card.json").is_file():  # finished by the run we waited for
                raise XlirError(f"{self.out} already holds a trained model; choose another --name or delete it")
            return self._train()

    def _train(self) -> dict:
        cfg = self.config
        self._started = time.perf_counter()
        resumed = self.resume()
        first_step = self.step  # step_seconds counts this process's steps only, not those before a resume
        task = None
        if self.progress is not None:
            task = self.progress.add_task(f"train {self.out.name}", total=cfg.max_steps, completed=self.step)
        stopped_early = False
        for pairs in self.batches():
            if self.step >= cfg.max_steps:
                break
            start = time.perf_counter()
            loss = self.batch_loss(pairs, self.train_data)
            check_finite(float(loss.detach()), "training loss", self.step + 1, cfg.lr)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            self.step_seconds += time.perf_counter() - start
            self.losses.append(round(float(loss.detach()), 6))
            if task is not None:
                rate = (self.step - first_step) / max(self.step_seconds, 1e-9)
                desc = (
                    f"train {self.out.name}: loss {self.losses[-1]:.4f} (mean of last 10: "
                    f"{np.mean(self.losses[-10:]):.4f}), best validation {self.best:.4f}, {rate:.2f} steps/s"
                )
                self.progress.update(task, completed=self.step, description=desc)
            if self.step % cfg.eval_every == 0 or self.step == cfg.max_steps:
                losses = self.validation_losses()
                val = losses["mean"]
                check_finite(val, "validation loss", self.step, cfg.lr)
                self.curve.append(
                    {"step": self.step, "validation_loss": round(val, 6),
                     **{f"validation_{k}": round(v, 6) for k, v in losses.items() if k != "mean"}}
                )  # fmt: skip
                if val < self.best:
                    self.best, self.best_step, self.stale = val, self.step, 0
                    self._save_model(self.out / "best")
                else:
                    self.stale += 1
                if self.stale >= cfg.patience:
                    stopped_early = True
            if self.step % cfg.checkpoint_every == 0 or stopped_early:
                self.save_checkpoint()
            if stopped_early:
                break
        if not (self.out / "best").is_dir():
            self._save_model(self.out / "best")
        return self._finish(resumed, stopped_early)

    def _finish(self, resumed: bool, stopped_early: bool) -> dict:
        if self.world_size > 1:
            self.torch.distributed.barrier()
        best = self.out / "best"
        if self.rank == 0:
            for item in best.iterdir():  # the best model becomes the folder's model
                os.replace(item, self.out / item.name)
            best.rmdir()
        card = {
            **asdict(self.config),
            "steps": self.step,
            "stopped_early": stopped_early,
            "resumed": resumed,
            "best_validation_loss": self.best,
            "best_step": self.best_step,  # the step whose weights were kept (early stopping / selection)
            "selection": "lowest mean of the mono and cross validation losses",
            "monolingual_batch_share": self.sampler.monolingual_share(self.step),  # realized, over the steps trained
            "monolingual_batch_share_kept": self.sampler.monolingual_share(self.best_step),  # up to the kept weights
            "losses": self.losses,
            "validation_curve": self.curve,
            "train_groups": len(self.train_data.groups),
            "validation_groups": len(self.val_data.groups),
            "sampler_share_of_step_time": self.sampler_seconds / max(self.step_seconds, 1e-9),
            "train_seconds": round(self.wall_seconds + time.perf_counter() - self._started, 1),
            "device_used": _describe(self.device),
            "autocast": str(self.autocast).replace("torch.", "") if self.autocast is not None else "fp32",
            "trainer_version": TRAINER_VERSION,
            "versions": _versions(),
        }
        card["world_size"] = self.world_size
        if self.rank == 0:
            write_bytes(self.out / "card.json", json.dumps(card, indent=1, allow_nan=False).encode())
            shutil.rmtree(self.out / "checkpoint", ignore_errors=True)  # finished: the model and card are the output
        return card


def check_finite(value: float, what: str, step: int, lr: float) -> None:
    """Stop at the first non-finite loss: the weights are garbage from here on, and nothing is saved from it."""
    if not math.isfinite(value):
        raise XlirError(
            f"training diverged: {what} is {value} at step {step}; nothing was saved from it. "
            f"Lower --lr (it is {lr:g}) or check the data"
        )


def swap_in(tmp: Path, folder: Path) -> None:
    """Checkpoints and the best model change atomically; a kill mid-way leaves ``.<folder>.old`` or ``tmp`` for
    :func:`latest_checkpoint` to find."""
    replace_dir(tmp, folder)


def latest_checkpoint(out: Path) -> tuple[Path, dict] | None:
    """The most advanced complete checkpoint (its ``state.json``, written last, reads): the current one, or what a
    kill during :func:`swap_in` left as the temporary or the previous folder."""
    best = None
    for folder in (out / "checkpoint", out / ".checkpoint.tmp", out / ".checkpoint.old"):
        try:
            state = read_json(folder / "state.json")
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and isinstance(state.get("step"), int):
            if best is None or state["step"] > best[1]["step"]:
                best = (folder, state)
    return best


@contextmanager
def folder_lock(folder: Path):
    """One training per output folder: a second one with the same --name is one error line, not a crash."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise XlirError(
            f"another training is writing {folder}; wait for it to finish or choose another --name"
        ) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _nothing():
    yield


def _dual_encoder(torch):
    class DualEncoder(torch.nn.Module):
        """Shared-weight encoder: one forward call embeds several tokenized batches (mean pooling)."""

        def __init__(self, encoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, batches):
            out = []
            for batch in batches:
                hidden = self.encoder(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))
            return out

    return DualEncoder


def _distributed_setup(torch) -> tuple[int, int]:
    """(rank, world size): torchrun's environment initialises a process group (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    from ..distributed import init_group

    init_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()
