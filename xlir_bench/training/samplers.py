"""Batch samplers: X-X-mono, X-Y and hybrid batches of (group, query language, passage language) triples.

* ``mono`` (X-X-mono): one language per batch, drawn uniformly; every pair is query and passage in it.
* ``cross`` (X-Y): every pair is cross-lingual, as in the paper: the query language is drawn uniformly from the
  group's languages and the passage language uniformly from the *other* ones. Only questions that exist in at least
  two languages can be in a cross batch.
* ``hybrid``: a share ``alpha`` of the batches is X-X-mono, the rest X-Y (arXiv 2408.10536, alpha 0.5).
  ``draw="exact"`` (the default) places exactly ``floor(alpha * n + 0.5)`` monolingual batches among the first n
  steps at every block boundary (blocks of ``block`` steps, the trainer's validation interval, shuffled by the seed
  within each block), so every seed, and every checkpoint kept at a validation, trains on the share it names;
  ``draw="coin"`` (trainer version 3's only draw) flips a coin per batch, and its realized share wanders from
  seed to seed (60 steps at alpha 0.5 give 30 +- 3.9 mono batches). ``schedule`` beyond the paper: ``rising``
  moves alpha linearly from 0 at the first step to 1 at step ``total_steps`` (cross-lingual batches early,
  monolingual late), ``falling`` the reverse; ``constant`` keeps it.

A batch never holds two versions of one question (translations would be false in-batch negatives). The draw
is a pure function of (seed, epoch): every rank of a distributed run generates the same global batch and keeps
its own slice, so all ranks see the same batch type at every step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .data import ParallelData

STRATEGIES = ("mono", "cross", "hybrid")
SCHEDULES = ("constant", "rising", "falling")
DRAWS = ("exact", "coin")


@dataclass(frozen=True)
class Pair:
    group: int  # index into ParallelData.groups
    query_language: str
    passage_language: str


class HybridBatchSampler:
    """Yields lists of :class:`Pair` (one list per step for this rank); a torch-style batch sampler."""

    def __init__(
        self,
        data: ParallelData,
        strategy: str,
        batch_size: int,
        *,
        alpha: float = 0.5,
        seed: int = 0,
        steps_per_epoch: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        schedule: str = "constant",
        total_steps: int | None = None,
        draw: str = "exact",
        block: int = 20,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        if schedule not in SCHEDULES or (schedule != "constant" and not total_steps):
            raise ValueError(f"schedule {schedule!r} needs total_steps; schedules are {', '.join(SCHEDULES)}")
        if draw not in DRAWS:
            raise ValueError(f"draw {draw!r}; use one of {', '.join(DRAWS)}")
        if strategy == "hybrid" and draw == "exact" and not total_steps:
            raise ValueError("an exact share of monolingual batches needs total_steps")
        self.schedule, self.total_steps, self.draw, self.block = schedule, total_steps, draw, max(1, int(block))
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha} must lie in [0, 1]")
        self.data, self.strategy, self.alpha, self.seed = data, strategy, float(alpha), int(seed)
        self.batch_size, self.rank, self.world_size = int(batch_size), int(rank), int(world_size)
        self.global_batch = self.batch_size * self.world_size
        self.by_language = {
            lang: np.array([i for i, g in enumerate(data.groups) if lang in g.languages]) for lang in data.languages
        }
        self.by_language = {k: v for k, v in self.by_language.items() if len(v) >= self.global_batch}
        if not self.by_language:
            raise ValueError(f"no language has {self.global_batch} training groups; lower the batch size")
        self.multilingual = np.array([i for i, g in enumerate(data.groups) if len(g.languages) >= 2])
        if (
            strategy != "mono"
            and (strategy == "cross" or self.alpha < 1 or schedule != "constant")
            and len(self.multilingual) < self.global_batch
        ):
            raise ValueError(
                f"{strategy} batches need {self.global_batch} questions in two or more languages; "
                f"the data has {len(self.multilingual)}"
            )
        self.steps_per_epoch = steps_per_epoch or max(1, len(data.groups) // self.global_batch)
        self.epoch = 0
        self.kinds = self._exact_kinds() if strategy == "hybrid" and draw == "exact" else None

    def _exact_kinds(self) -> list[str]:
        """The kind of every step, fixed before training. Constant alpha: the steps are cut into blocks of ``block``
        and each block gets its exact share of monolingual batches (the running count after every block is
        floor(alpha x steps + 0.5)), in an order shuffled by the seed within the block, so a run stopped early, or
        the checkpoint kept at a validation step, has the share alpha names too. A schedule: systematic sampling
        with a random start (a step is monolingual when the running sum of alpha passes an integer), so the count
        is the schedule's sum rounded and the monolingual batches follow the schedule's density."""
        rng = np.random.default_rng([self.seed, 0x6B696E64])  # its own stream: the batches' draws stay independent
        steps = int(self.total_steps)
        if self.schedule == "constant":
            kinds: list[str] = []
            for start in range(0, steps, self.block):
                end = min(steps, start + self.block)
                mono = int(np.floor(self.alpha * end + 0.5)) - int(np.floor(self.alpha * start + 0.5))
                block = np.array(["mono"] * mono + ["cross"] * (end - start - mono))
                kinds += [str(k) for k in rng.permutation(block)]
            return kinds
        running = rng.random() + np.cumsum([self.alpha_at(step) for step in range(steps)])
        passed = np.diff(np.floor(running), prepend=np.floor(running[0] - self.alpha_at(0)))
        return ["mono" if p > 0 else "cross" for p in passed]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def alpha_at(self, step: int) -> float:
        """The share of monolingual batches at global step ``step`` (0-based)."""
        if self.schedule == "constant":
            return self.alpha
        progress = min(1.0, step / max(1, self.total_steps - 1))
        return progress if self.schedule == "rising" else 1.0 - progress

    def batch_kind(self, rng: np.random.Generator, step: int = 0) -> str:
        if self.strategy != "hybrid":
            return self.strategy
        if self.kinds is not None and step < len(self.kinds):
            return self.kinds[step]
        return "mono" if rng.random() < self.alpha_at(step) else "cross"  # the coin (also past total_steps)

    def monolingual_share(self, steps: int) -> float | None:
        """The share of monolingual batches among the first ``steps`` global steps as trained (None before a step),
        replayed from the seed, so a card records what the model saw rather than what alpha asked for."""
        if steps < 1:
            return None
        if self.strategy != "hybrid":
            return 1.0 if self.strategy == "mono" else 0.0
        if self.kinds is not None and steps <= len(self.kinds):  # the exact draw: its kinds are the schedule
            return self.kinds[:steps].count("mono") / steps
        kinds: list[str] = []
        current = self.epoch
        for epoch in range(-(-steps // self.steps_per_epoch)):
            self.epoch = epoch
            kinds += [kind for kind, _ in self.global_batches()]
        self.epoch = current
        return kinds[:steps].count("mono") / steps

    def global_batches(self) -> Iterator[tuple[str, list[Pair]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        languages = sorted(self.by_language)
        for i in range(self.steps_per_epoch):
            kind = self.batch_kind(rng, self.epoch * self.steps_per_epoch + i)
            if kind == "mono":
                lang = languages[rng.integers(len(languages))]
                groups = rng.choice(self.by_language[lang], size=self.global_batch, replace=False)
                pairs = [Pair(int(g), lang, lang) for g in groups]
            else:
                groups = rng.choice(self.multilingual, size=self.global_batch, replace=False)
                pairs = []
                for g in groups:
                    langs = self.data.groups[g].languages
                    q = int(rng.integers(len(langs)))
                    d = (q + 1 + int(rng.integers(len(langs) - 1))) % len(langs)  # uniform over the others
                    pairs.append(Pair(int(g), langs[q], langs[d]))
            yield kind, pairs

    def __iter__(self) -> Iterator[list[Pair]]:
        lo = self.rank * self.batch_size
        for _, pairs in self.global_batches():
            yield pairs[lo : lo + self.batch_size]
