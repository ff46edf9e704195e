"""The length study's registered rules, on constructed validation curves."""

from __future__ import annotations

from xlir_bench.training.length import decide, mean_curve, render


def _run(strategy, seed, losses, frozen=True, every=20):
    curve = [{"step": every * (i + 1), "validation_loss": v} for i, v in enumerate(losses)]
    best = min(range(len(losses)), key=lambda i: (losses[i], i))
    return {"strategy": strategy, "freeze_embeddings": frozen, "seed": seed, "steps": every * len(losses),
            "best_step": every * (best + 1), "best_validation_loss": losses[best], "validation_curve": curve,
            "monolingual_batch_share": 0.5, "train_seconds": 100.0}  # fmt: skip


def test_the_length_is_the_latest_best_step_of_the_seed_mean_curves():
    runs = [
        _run("hybrid", 0, [0.5, 0.4, 0.35, 0.36, 0.37]), _run("hybrid", 1, [0.5, 0.42, 0.36, 0.34, 0.40, 0.41]),
        _run("mono", 0, [0.6, 0.5, 0.55, 0.56]), _run("mono", 1, [0.6, 0.52, 0.56, 0.57]),
        _run("cross", 0, [0.5, 0.45, 0.44, 0.43]), _run("cross", 1, [0.5, 0.46, 0.45, 0.44]),
    ]  # fmt: skip
    # the seed mean runs over the steps both seeds reached: hybrid to step 100, with its minimum at 80 (0.35)
    assert mean_curve(runs[:2])[-1][0] == 100 and min(mean_curve(runs[:2]), key=lambda p: p[1])[0] == 80
    out = decide(runs)
    assert out["arms"]["mono"]["best_step"] == 40 and out["arms"]["cross"]["best_step"] == 80
    assert out["arms"]["hybrid"]["best_step"] == 80 and out["arms"]["hybrid"]["converged"]
    runs[5] = _run("cross", 1, [0.5, 0.46, 0.45, 0.44, 0.43, 0.42])  # the other seed goes on: still common to 80
    assert decide(runs)["length"] == 80  # the latest of 80, 40 and 80: no strategy is cut short
    assert out["unconverged"] == ["cross"]  # still falling at its last common step
    assert out["embeddings"] is None
    text = render({"base": "b", "train": "t", "batch_size": 32, "command": "c", "max_steps": 100, "eval_every": 20,
                   "patience": 3}, runs, out)  # fmt: skip
    assert "- **Length: 80 steps**" in text and "Not converged within 100 steps: cross." in text


def test_trained_embeddings_must_win_on_every_seed_by_the_margin():
    frozen = [_run("hybrid", s, [0.5, 0.30]) for s in (0, 1)]
    full = [_run("hybrid", 0, [0.5, 0.27], frozen=False), _run("hybrid", 1, [0.5, 0.28], frozen=False)]
    assert decide(frozen + full)["embeddings"]["decision"] == "train the token embeddings"
    full[1] = _run("hybrid", 1, [0.5, 0.305], frozen=False)  # one seed worse: keep them frozen
    decision = decide(frozen + full)["embeddings"]
    assert decision["decision"] == "keep the token embeddings frozen" and decision["seeds"] == [0, 1]
    small = [_run("hybrid", s, [0.5, 0.295], frozen=False) for s in (0, 1)]  # better on both, by less than 0.01
    assert decide(frozen + small)["embeddings"]["decision"] == "keep the token embeddings frozen"
