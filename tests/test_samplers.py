"""Batch composition of the mono / cross / hybrid samplers on real XQuAD-R and MLQA-R groups."""

from __future__ import annotations

import numpy as np
import pytest

from xlir_bench.training.data import from_suite
from xlir_bench.training.samplers import HybridBatchSampler


@pytest.fixture(scope="module")
def xquad_groups(xquad):
    return from_suite(xquad)


@pytest.fixture(scope="module")
def mlqa_groups(mlqa):
    return from_suite(mlqa)


def test_groups_from_suite(xquad_groups, mlqa_groups):
    assert len(xquad_groups.groups) == 1190 and all(len(g.languages) == 11 for g in xquad_groups.groups)
    assert len(mlqa_groups.groups) == 1148 and {len(g.languages) for g in mlqa_groups.groups} == {2, 3, 4}
    group = xquad_groups.groups[0]
    assert group.passages["en"] not in group.negatives["en"] and len(group.negatives["en"]) >= 1


def test_mono_batches_are_one_language(mlqa_groups):
    sampler = HybridBatchSampler(mlqa_groups, "mono", 32, seed=1, steps_per_epoch=50)
    for batch in sampler:
        langs = {p.query_language for p in batch} | {p.passage_language for p in batch}
        assert len(langs) == 1
        assert all(langs <= set(mlqa_groups.groups[p.group].languages) for p in batch)


@pytest.mark.parametrize("strategy", ["cross", "hybrid"])
def test_cross_pairs_are_never_same_language(xquad_groups, mlqa_groups, strategy):
    """The paper's X-Y batches: every pair of a cross batch (also hybrid's cross arm) has two languages."""
    for data in (xquad_groups, mlqa_groups):
        sampler = HybridBatchSampler(data, strategy, 32, seed=2, steps_per_epoch=200, total_steps=200)
        for kind, pairs in sampler.global_batches():
            if kind == "cross":
                assert all(p.query_language != p.passage_language for p in pairs)
                assert all({p.query_language, p.passage_language} <= set(data.groups[p.group].languages) for p in pairs)


def test_cross_languages_are_uniform(xquad_groups):
    pairs = [p for batch in HybridBatchSampler(xquad_groups, "cross", 32, seed=2, steps_per_epoch=300) for p in batch]
    counts = np.unique([(p.query_language, p.passage_language) for p in pairs], axis=0, return_counts=True)[1]
    assert len(counts) == 110  # every ordered pair of different languages occurs
    assert counts.max() / counts.min() < 2.5  # ~87 draws each: uniform within sampling noise


def test_single_language_questions_never_enter_cross_batches(mlqa_groups):
    from xlir_bench.training.data import ParallelData, ParallelGroup

    lonely = [ParallelGroup(f"x{i}", {"en": "q"}, {"en": "p"}) for i in range(40)]
    data = ParallelData(mlqa_groups.groups[:40] + lonely, mlqa_groups.languages, "mix")
    ids = {i for i, g in enumerate(data.groups) if len(g.languages) == 1}
    for batch in HybridBatchSampler(data, "cross", 16, seed=1, steps_per_epoch=50):
        assert not ids & {p.group for p in batch}
    with pytest.raises(ValueError, match="two or more languages"):
        HybridBatchSampler(ParallelData(lonely, ["en"], "en only"), "cross", 16)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_hybrid_mono_share_follows_alpha(xquad_groups, alpha):
    sampler = HybridBatchSampler(xquad_groups, "hybrid", 8, alpha=alpha, seed=3, steps_per_epoch=2000, draw="coin")
    kinds = [kind for kind, _ in sampler.global_batches()]
    share = kinds.count("mono") / len(kinds)
    assert abs(share - alpha) < 0.035  # ~3 standard deviations at 2,000 batches
    assert sampler.monolingual_share(2000) == share


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("steps", [1, 7, 60, 61])
def test_exact_draw_places_exactly_the_share_alpha_names(xquad_groups, alpha, steps):
    """Every seed trains on floor(alpha x steps + 0.5) monolingual batches (the coin gave 0.38-0.58 at 0.5 and 60
    steps), over several epochs, in an order that depends on the seed."""
    orders = []
    for seed in range(6):
        sampler = HybridBatchSampler(xquad_groups, "hybrid", 8, alpha=alpha, seed=seed, steps_per_epoch=13,
                                     total_steps=steps)  # fmt: skip
        kinds = []
        for epoch in range(-(-steps // 13)):
            sampler.set_epoch(epoch)
            kinds += [kind for kind, _ in sampler.global_batches()]
        kinds = kinds[:steps]
        assert kinds.count("mono") == int(np.floor(alpha * steps + 0.5))
        assert sampler.monolingual_share(steps) == pytest.approx(kinds.count("mono") / steps)
        orders.append(tuple(kinds))
    if 0 < alpha < 1 and steps >= 60:
        assert len(set(orders)) == 6
    with pytest.raises(ValueError, match="needs total_steps"):
        HybridBatchSampler(xquad_groups, "hybrid", 8, alpha=alpha)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.7])
def test_an_early_stop_at_a_block_boundary_keeps_the_exact_share(xquad_groups, alpha):
    """The trainer validates (and keeps checkpoints) every ``block`` steps: at each of those steps the share is
    already exact, so a run stopped early is not left with a share the seed happened to draw."""
    sampler = HybridBatchSampler(xquad_groups, "hybrid", 8, alpha=alpha, seed=4, steps_per_epoch=300,
                                 total_steps=300, block=20)  # fmt: skip
    kinds = [kind for kind, _ in sampler.global_batches()]
    for stop in range(20, 301, 20):
        assert kinds[:stop].count("mono") == int(np.floor(alpha * stop + 0.5))
    assert len({tuple(kinds[i : i + 20]) for i in range(0, 300, 20)}) > 1  # shuffled, not one repeated pattern


@pytest.mark.parametrize("schedule", ["rising", "falling"])
def test_exact_draw_follows_a_schedule_with_its_rounded_count(xquad_groups, schedule):
    sampler = HybridBatchSampler(xquad_groups, "hybrid", 8, seed=2, steps_per_epoch=400, schedule=schedule,
                                 total_steps=400)  # fmt: skip
    kinds = np.array([kind == "mono" for kind, _ in sampler.global_batches()])
    expected = sum(sampler.alpha_at(step) for step in range(400))
    assert abs(kinds.sum() - expected) <= 1
    early, late = kinds[:100].mean(), kinds[-100:].mean()
    assert (early < 0.2 and late > 0.8) if schedule == "rising" else (early > 0.8 and late < 0.2)


@pytest.mark.parametrize("strategy", ["mono", "cross", "hybrid"])
def test_no_question_twice_in_a_batch(mlqa_groups, strategy):
    for batch in HybridBatchSampler(mlqa_groups, strategy, 64, seed=4, steps_per_epoch=40, total_steps=40):
        assert len({p.group for p in batch}) == len(batch) == 64


def test_deterministic_per_seed_and_epoch(xquad_groups):
    a = list(HybridBatchSampler(xquad_groups, "hybrid", 16, seed=5, steps_per_epoch=20, total_steps=40))
    b = list(HybridBatchSampler(xquad_groups, "hybrid", 16, seed=5, steps_per_epoch=20, total_steps=40))
    c = list(HybridBatchSampler(xquad_groups, "hybrid", 16, seed=6, steps_per_epoch=20, total_steps=40))
    assert a == b and a != c
    sampler = HybridBatchSampler(xquad_groups, "hybrid", 16, seed=5, steps_per_epoch=20, total_steps=40)
    sampler.set_epoch(1)
    assert list(sampler) != a


def test_ranks_share_one_global_batch(xquad_groups):
    ranks = [
        HybridBatchSampler(xquad_groups, "hybrid", 8, seed=7, steps_per_epoch=30, rank=r, world_size=2, total_steps=30)
        for r in (0, 1)
    ]
    single = HybridBatchSampler(xquad_groups, "hybrid", 16, seed=7, steps_per_epoch=30, total_steps=30)
    for left, right, whole in zip(*ranks, single):
        assert left + right == whole  # same batch type on both ranks, disjoint halves, no duplicate groups


@pytest.mark.parametrize("schedule", ["rising", "falling"])
def test_alpha_schedules_move_from_cross_to_mono_or_back(xquad_groups, schedule):
    sampler = HybridBatchSampler(xquad_groups, "hybrid", 8, seed=3, steps_per_epoch=3000, schedule=schedule,
                                 total_steps=3000, draw="coin")  # fmt: skip
    kinds = np.array([kind == "mono" for kind, _ in sampler.global_batches()])
    early, late = kinds[:600].mean(), kinds[-600:].mean()
    assert (early, late) == ((pytest.approx(0.1, abs=0.05), pytest.approx(0.9, abs=0.05)) if schedule == "rising"
                             else (pytest.approx(0.9, abs=0.05), pytest.approx(0.1, abs=0.05)))  # fmt: skip
    assert sampler.alpha_at(0) == (0.0 if schedule == "rising" else 1.0) and sampler.alpha_at(2999) == (
        1.0 if schedule == "rising" else 0.0)  # fmt: skip
    with pytest.raises(ValueError, match="needs total_steps"):
        HybridBatchSampler(xquad_groups, "hybrid", 8, schedule=schedule)
