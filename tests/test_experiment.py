"""The domain-shift experiment's safeguards and summary, and the paired randomization test."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from xlir_bench.errors import XlirError
from xlir_bench.metrics.significance import paired_randomization
from xlir_bench.training.data import ParallelData, ParallelGroup, from_suite
from xlir_bench.training.experiment import (
    Overlap,
    check_overlap,
    measure_overlap,
    reading,
    render_markdown,
    summarise,
)


def test_real_suites_barely_overlap(xquad, mlqa):
    overlap = measure_overlap(from_suite(mlqa), xquad)
    assert overlap.query_count == 0 and overlap.candidate_count == 2  # two short sentences occur in both
    check_overlap(overlap, allow=False)  # below the 1% threshold: runs


def test_overlapping_training_data_is_refused(xquad):
    leaked = [ParallelGroup("g", {"en": q.text}, {"en": "x"}) for q in xquad.queries[:200]]
    overlap = measure_overlap(ParallelData(leaked, ["en"], "leak"), xquad)
    assert overlap.query_count == 200
    with pytest.raises(XlirError, match="overlap the evaluation suite: 200 queries"):
        check_overlap(overlap, allow=False)
    check_overlap(overlap, allow=True)


def test_summary_means_stds_seed_gaps_and_markdown():
    rows = [
        {"strategy": s, "seed": seed, "setting": "multilingual", "mAP": m, "rank_distance": 10.0, "lang_pref@1": 0.5}
        for s, seed, m in [("hybrid", 0, 0.5), ("hybrid", 1, 0.7), ("mono", 0, 0.4), ("mono", 1, 0.8)]
    ]
    # per strategy, one list of per-query AP per seed; the tests average them over seeds first
    per_query = {"hybrid": [[0.9, 0.8, 0.7, 0.9], [0.7, 0.8, 0.9, 0.9]], "mono": [[0.1, 0.2, 0.1, 0.3]] * 2}
    summary = summarise(rows, per_query, resamples=500)
    cell = summary["table"]["hybrid"]["multilingual"]["mAP"]
    assert cell["mean"] == 0.6 and cell["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1)) and cell["n"] == 2
    assert summary["seed_gaps_multilingual_mAP"]["hybrid - mono"] == pytest.approx([0.1, -0.1])
    test = summary["comparisons_multilingual_AP"]["hybrid vs mono"]
    assert test["mean_difference"] == pytest.approx(0.65) and test["p_value"] == 0.125  # 2/16 sign vectors
    assert test["p_holm"] == 0.125 and not test["significant"] and test["units"] == 4 and test["unit"] == "query"
    assert test["across_seeds"]["seeds"] == 2 and test["ci95"][0] > 0
    meta = {"base": "b", "train": "mlqa-r", "eval": "xquad-r", "command": "c", "seeds": 2, "max_steps": 1,
            "batch_size": 2, "alpha": 0.5, "overlap": Overlap(0, 0, 0, 0).as_dict()}  # fmt: skip
    text = render_markdown(summary, meta)
    assert "| hybrid | 0.6000 ± 0.1414 |" in text
    assert "p = 0.125 (Holm p = 0.125; 4 units, a unit being one query)" in text
    assert "- hybrid - mono: +0.1000, -0.1000 (hybrid ahead in 1 of 2 seeds)" in text
    assert "sample standard deviation" in text and "unseen" not in text
    assert "Question level after Holm (0.05): hybrid ~ mono (not significant)." in text
    assert "| batch and length | batch 100, trained until validation loss stops improving | batch 2, at most 1" in text
    # the primary verdict: seeds and questions resampled; every query is better by 0.4 or more, so the direction holds
    assert test["verdict"] == "higher" and test["two_level"]["seeds"] == [2, 2]
    assert "hybrid vs mono: **hybrid higher than mono**, +0.6500 [" in text


def test_trained_strategies_against_the_untrained_base_in_both_settings():
    rows = [{"strategy": s, "seed": 0, "setting": "multilingual", "mAP": 0.5} for s in ("base", "mono", "cross")]
    per_query = {"base": [[0.5, 0.5, 0.5, 0.5]], "mono": [[0.7, 0.8, 0.7, 0.9]], "cross": [[0.6, 0.6, 0.6, 0.6]]}
    mono = {"base": [[0.9, 0.9, 0.9, None]], "mono": [[0.8, 0.8, 0.8, 0.8]], "cross": [[0.9, 0.9, 0.9, 0.1]]}
    summary = summarise(rows, per_query, resamples=300, per_query_mono=mono)
    assert summary["vs_base"]["mono"]["multilingual"]["verdict"] == "higher"
    assert summary["vs_base"]["mono"]["monolingual"]["verdict"] == "lower"
    assert summary["vs_base"]["mono"]["monolingual"]["mean_difference"] == pytest.approx(-0.1)  # None left out
    assert summary["vs_base"]["cross"]["monolingual"]["verdict"] == "equivalent"
    assert "vs_base" not in summarise(rows[1:], {k: v for k, v in per_query.items() if k != "base"}, resamples=50)


def test_comparisons_resample_questions_not_translations():
    """Two questions x 3 translations, hybrid better on both: per query that is 6 units (p = 2/64), per question
    only 2 (p = 0.5, the smallest possible with two clusters)."""
    per_query = {"hybrid": [[0.9] * 6], "cross": [[0.5] * 6], "mono": [[0.4] * 6]}
    rows = [{"strategy": s, "seed": 0, "setting": "multilingual", "mAP": v} for s, v in
            (("hybrid", 0.9), ("cross", 0.5), ("mono", 0.4))]  # fmt: skip
    clustered = summarise(rows, per_query, clusters=["a", "a", "a", "b", "b", "b"], resamples=200)
    flat = summarise(rows, per_query, resamples=200)
    assert clustered["comparisons_multilingual_AP"]["hybrid vs cross"]["p_value"] == 0.5
    assert clustered["comparisons_multilingual_AP"]["hybrid vs cross"]["units"] == 2
    assert flat["comparisons_multilingual_AP"]["hybrid vs cross"]["p_value"] == 2 / 64


def test_unseen_languages_get_their_own_question_level_tests():
    """Queries in languages never trained on, tested alone: on them hybrid is better than cross on all 4 questions
    (p = 2/16 at the question level, exact), while over all queries the seen-language questions, where cross is
    better, cancel it. The unseen family is Holm-corrected on its own, and the reading says so."""
    clusters = ["q0", "q1", "q2", "q3"] * 2  # 4 questions, each in a seen and an unseen language
    unseen = [False] * 4 + [True] * 4
    per_query = {
        "hybrid": [[0.2, 0.2, 0.2, 0.2, 0.8, 0.8, 0.8, 0.8]] * 2,
        "cross": [[0.8, 0.8, 0.8, 0.8, 0.2, 0.2, 0.2, 0.2]] * 2,
    }
    rows = [{"strategy": s, "seed": seed, "setting": "multilingual", "mAP": 0.5, "unseen_mAP": u}
            for s, u in (("hybrid", 0.8), ("cross", 0.2)) for seed in (0, 1)]  # fmt: skip
    summary = summarise(rows, per_query, clusters=clusters, resamples=200, unseen=unseen)
    everyone = summary["comparisons_multilingual_AP"]["hybrid vs cross"]
    alone = summary["comparisons_unseen_multilingual_AP"]["hybrid vs cross"]
    assert everyone["mean_difference"] == pytest.approx(0.0) and everyone["p_value"] == 1.0
    assert alone["mean_difference"] == pytest.approx(0.6) and alone["p_value"] == 2 / 16 and alone["units"] == 4
    assert alone["queries"] == 4 and alone["across_seeds"]["mean_difference"] == pytest.approx(0.6)
    meta = {"unseen_languages": ["el", "th"]}
    text = "\n".join(reading(summary, meta))
    assert "Query languages never trained on (el/th)" in text
    assert "  - hybrid vs cross: multilingual AP difference +0.6000" in text
    assert "comparisons_unseen_multilingual_AP" not in summarise(rows, per_query, clusters=clusters, resamples=200)


def test_unseen_language_columns(xquad):  # per_language as Evaluator writes it
    """Languages of the evaluation suite absent from training get their own mean, in rows and in the table."""
    from xlir_bench.training.experiment import records_for

    rng = np.random.default_rng(0)
    per_language = {
        lang: {"mAP": float(m), "rank_distance": float(d)}
        for lang, m, d in zip(xquad.languages, rng.random(11), rng.random(11) * 100)
    }
    result = {
        "model": {"name": "m"}, "suite": {"name": "xquad-r"},
        "settings": {"multilingual": {"metrics": {"mAP": 0.5}, "per_language": per_language,
                                      "bias": {"rank_distance": 1.0, "lang_pref@1": 0.2}}},
    }  # fmt: skip
    unseen = ["el", "ru", "th", "tr"]
    (row,) = records_for(result, "hybrid", 0, unseen)
    assert row["unseen_mAP"] == pytest.approx(np.mean([per_language[x]["mAP"] for x in unseen]))
    assert row["unseen_rank_distance"] == pytest.approx(np.mean([per_language[x]["rank_distance"] for x in unseen]))
    summary = summarise([row], {})
    meta = {"base": "b", "train": "mlqa-r", "eval": "xquad-r", "command": "c", "seeds": 1, "max_steps": 1,
            "batch_size": 2, "alpha": 0.5, "overlap": Overlap(0, 0, 0, 0).as_dict()}  # fmt: skip
    meta["unseen_languages"] = unseen
    text = render_markdown(summary, meta)
    assert "multilingual mAP, unseen (el/ru/th/tr) |" in text
    assert f"| {row['unseen_mAP']:.4f} |" in text


def test_paired_randomization():
    rng = np.random.default_rng(0)
    a = rng.random(500)
    assert paired_randomization(a, a + 0.2)["p_value"] < 0.001
    noise = paired_randomization(a, a + rng.normal(0, 0.1, 500))
    assert noise["p_value"] > 0.01
    assert paired_randomization([1, 2, 3], [1, 2, 3])["p_value"] == 1.0
    with pytest.raises(ValueError):
        paired_randomization([1], [1, 2])


def test_other_configurations_get_other_names(tmp_path):
    from xlir_bench.training.experiment import check_reusable, model_name, variant
    from xlir_bench.training.trainer import TRAINER_VERSION, TrainConfig

    assert variant(32, True, 0.5, 64, False) == ""  # the committed CPU run keeps its names
    assert model_name("e5-small", "mlqa-r", "hybrid", 0, 60) == "ds-e5-small-mlqa-r-hybrid-60st-s0"
    gpu = variant(100, False, 0.4, 128, True)
    assert gpu == "-b100-full-a0.4-len128-hn"
    assert (
        model_name("e5-small", "mlqa-r", "mono", 2, 500, gpu)
        == "ds-e5-small-mlqa-r-mono-500st-b100-full-a0.4-len128-hn-s2"
    )

    trained = TrainConfig(base="e5-small", base_path="x", strategy="hybrid", batch_size=32, max_steps=60, data="mlqa-r")
    card = {**dataclasses.asdict(trained), "trainer_version": TRAINER_VERSION}
    (tmp_path / "card.json").write_text(json.dumps(card))
    check_reusable(tmp_path, trained)
    asked = dataclasses.replace(trained, batch_size=100)
    with pytest.raises(XlirError, match=r"trained with batch_size=32 \(this run: 100\)"):
        check_reusable(tmp_path, asked)
    # hybrid models drawn by coin (every card before alpha_draw) are never reused for an exact draw, and are named apart
    assert variant(32, True, 0.5, 64, False, draw="exact") == "-exact"
    old = {k: v for k, v in card.items() if k != "alpha_draw"}
    (tmp_path / "card.json").write_text(json.dumps(old))
    with pytest.raises(XlirError, match=r"alpha_draw='coin' \(this run: 'exact'\)"):
        check_reusable(tmp_path, trained)
    check_reusable(tmp_path, dataclasses.replace(trained, alpha_draw="coin"))
    mono = dataclasses.replace(trained, strategy="mono")
    (tmp_path / "card.json").write_text(json.dumps({**old, "strategy": "mono"}))
    check_reusable(tmp_path, mono)  # the draw does not shape mono batches: an old mono model stays reusable
    # a model from older trainer code is never reused, whatever its configuration says
    (tmp_path / "card.json").write_text(json.dumps({**card, "trainer_version": TRAINER_VERSION - 1}))
    with pytest.raises(XlirError, match=rf"trainer_version={TRAINER_VERSION - 1} \(this run: {TRAINER_VERSION}\)"):
        check_reusable(tmp_path, trained)


def test_committed_results_are_reused_only_for_the_same_training(tmp_path):
    """A fresh machine without the trained weights resumes from committed results, but never from results of
    another configuration or trainer version."""
    from types import SimpleNamespace

    from xlir_bench import results
    from xlir_bench.training.experiment import committed_result
    from xlir_bench.training.trainer import TRAINER_VERSION, TrainConfig

    suite = SimpleNamespace(name="xquad-r", checksums={"xquad-r/en.json": "abc"})
    config = TrainConfig(base="e5-small", base_path="x", strategy="hybrid", seed=1, data="mlqa-r", languages=["en"])
    training = {"base": "e5-small", "strategy": "hybrid", "seed": 1, "data": "mlqa-r", "alpha": 0.5,
                "alpha_schedule": "constant", "alpha_draw": "exact", "languages": ["en"],
                "trainer_version": TRAINER_VERSION}  # fmt: skip
    from xlir_bench.engine import ENGINE

    result = {
        "schema_version": 1, "model": {"name": "trained:m", "metadata": {"training": training}},
        "suite": {"name": "xquad-r", "checksums_md5": suite.checksums},
        "settings": {"multilingual": {"metrics": {"mAP": 0.5}}}, "per_query": {"query_ids": [], "AP": {}},
        "provenance": {},
    }  # fmt: skip
    results.write_result(tmp_path, result)
    assert committed_result(tmp_path, "trained:m", suite, config) is None  # scored before the one engine: redone
    result["engine"] = ENGINE
    results.write_result(tmp_path, result)
    assert committed_result(tmp_path, "trained:m", suite, config)["model"]["name"] == "trained:m"
    assert committed_result(tmp_path, "trained:m", suite, dataclasses.replace(config, seed=2)) is None
    assert committed_result(tmp_path, "trained:m", suite, dataclasses.replace(config, alpha_draw="coin")) is None
    old = json.loads(json.dumps(result))
    old["model"]["metadata"]["training"]["trainer_version"] = TRAINER_VERSION - 1
    old["engine"] = ENGINE
    results.write_atomic(results.result_path(tmp_path, "trained:m", "xquad-r"), json.dumps(old))
    assert committed_result(tmp_path, "trained:m", suite, config) is None
    other_data = SimpleNamespace(name="xquad-r", checksums={"xquad-r/en.json": "changed"})
    assert committed_result(tmp_path, "trained:m", other_data, None) is None


def test_summary_draws_mono_against_multi(tmp_path):
    """write_summary adds <stem>.png (one point per model and seed, the mean per strategy) and links it; README's
    generated block points at it under results/experiments/."""
    from xlir_bench import readme
    from xlir_bench.training.experiment import scatter_rows, write_summary

    rows = [
        {"strategy": s, "seed": seed, "setting": setting, "mAP": value}
        for s, base in (("mono", 0.5), ("cross", 0.52), ("hybrid", 0.53))
        for seed in (0, 1)
        for setting, value in (("monolingual", base + 0.25 + 0.01 * seed), ("multilingual", base + 0.01 * seed))
    ]
    assert len(scatter_rows(rows)) == 6 and {"config", "seed", "monolingual", "multilingual"} <= set(
        scatter_rows(rows)[0]
    )
    summary = {**summarise(rows, {}, resamples=100), "rows": rows}
    meta = {"base": "b", "train": "mlqa-r", "eval": "xquad-r", "command": "c", "seeds": 2, "max_steps": 1,
            "batch_size": 2, "alpha": 0.5, "overlap": Overlap(0, 0, 0, 0).as_dict()}  # fmt: skip
    _, md = write_summary(tmp_path, "domain-shift-x", summary, meta)
    png = tmp_path / "experiments" / "domain-shift-x.png"
    assert png.is_file() and png.stat().st_size > 5000
    assert "](domain-shift-x.png)" in md.read_text()
    assert "](results/experiments/domain-shift-x.png)" in readme.experiment_block(tmp_path, "domain-shift-x")
    for stem in ("domain-shift-x-a0.75", "domain-shift-x-a0.25"):  # the sweep's stems: a dot is not a suffix
        _, md = write_summary(tmp_path, stem, summary, meta)
        assert (tmp_path / "experiments" / f"{stem}.png").is_file() and f"]({stem}.png)" in md.read_text()
    assert not (tmp_path / "experiments" / "domain-shift-x-a0.png").exists()


def test_models_are_evaluated_in_fp32_under_their_plain_name_whatever_auto_picks(tmp_path, monkeypatch):
    """The committed domain-shift results are fp32; on a CPU where dtype=auto picks int8, a model evaluated by the
    experiment must still run in fp32 and keep the label (so the file) of the committed results."""
    pytest.importorskip("transformers")
    from conftest import make_tiny_bert

    from xlir_bench.models import precision
    from xlir_bench.plugins import load_model
    from xlir_bench.training.experiment import evaluation_model

    folder = make_tiny_bert(tmp_path, layers=1)
    monkeypatch.setattr(precision, "choose", lambda device: ("int8", "auto: test"))
    assert load_model(f"hf:{folder}", device="cpu").metadata["dtype"] == "int8"  # what a plain run gets here
    model = evaluation_model(f"hf:{folder}", "cpu")
    assert model.metadata["dtype"] == "fp32" and model.label == f"hf:{folder}"
    # batched as the committed results were (64 x 128 tokens), whatever the CPU default is now
    assert model.metadata["batch_tokens"] == "max_tokens=8192" and model.plugin.max_tokens == 8192


def test_the_reading_confronts_the_papers_claims():
    from xlir_bench.training.readings import against_the_paper

    def cell(m):
        return {"mAP": {"mean": m}, "rank_distance": {"mean": 100 * m}}

    settings = ("multilingual", "monolingual", "cross-lingual")
    means = {"mono": (0.5, 0.8, 0.6), "cross": (0.56, 0.76, 0.68), "hybrid": (0.54, 0.77, 0.66)}
    table = {s: {k: cell(m) for k, m in zip(settings, values)} for s, values in means.items()}
    rows = [{"strategy": s, "seed": k, "setting": "multilingual", "rank_distance": d}
            for s, k, d in [("hybrid", 0, 350), ("mono", 0, 380), ("hybrid", 1, 390), ("mono", 1, 385)]]  # fmt: skip
    comparisons = {"hybrid vs cross": {"two_level": {}, "verdict": "lower"},
                   "hybrid vs mono": {"two_level": {}, "verdict": "inconclusive"}}  # fmt: skip
    vs_base = {"mono": {"monolingual": {"verdict": "lower"}}, "hybrid": {"monolingual": {"verdict": "equivalent"}}}
    text = "\n".join(against_the_paper({"table": table, "rows": rows, "comparisons_multilingual_AP": comparisons,
                                        "vs_base": vs_base}))  # fmt: skip
    assert "hybrid is best (highest mean mAP) in no setting here (multilingual: cross; monolingual: mono" in text
    assert '"Hybrid is best in the multilingual setting" is contradicted (hybrid lower than cross' in text
    assert "rank distance 54.0 vs 50.0" in text and "lower in 1 of 2 seeds" in text and "not supported" in text
    assert "Fine-tuning costs monolingual quality: mono lower than the untrained base" in text
    comparisons["hybrid vs cross"]["verdict"] = "higher"
    comparisons["hybrid vs mono"]["verdict"] = "higher"
    assert "is supported (hybrid higher than mono and cross" in "\n".join(
        against_the_paper({"table": table, "rows": rows, "comparisons_multilingual_AP": comparisons})
    )


def test_the_papers_configuration_runs_on_a_tiny_model_of_xlmr_architecture(tmp_path, monkeypatch):
    """The paper's setup is one command: `experiment domain-shift --base xlmr --batch-size 100` (no
    --freeze-embeddings: full fine-tuning). The hub is out of reach here, so it runs on a randomly initialised
    XLM-RoBERTa of the same architecture at toy width (with e5-small's XLM-R tokenizer), two steps per model: every
    stage (batch 100, all weights trained, the three strategies, the evaluation of base and models) and the summary
    saying what it ran."""
    import shutil

    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xlir_bench.models.e5_small import converted_path
    from xlir_bench.training.experiment import domain_shift

    source, tiny = converted_path(), tmp_path / "tiny-xlmr"
    tiny.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, tiny / name)
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(str(tiny)))
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=32)  # fmt: skip
    XLMRobertaModel(config).save_pretrained(tiny)
    monkeypatch.setenv("XLIR_BENCH_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path / "cache"))
    summary, meta, stem = domain_shift(
        base=f"hf:{tiny}", train="mlqa-r", evaluate="xquad-r", seeds=1, max_steps=2, batch_size=100, alpha=0.5,
        max_length=32, hard_negatives=False, freeze_embeddings=False, allow_overlap=False, data_dir=None,
        results_root=tmp_path / "results", progress=None, command="test", device="cpu",
    )  # fmt: skip
    assert set(summary["table"]) == {"base", "mono", "cross", "hybrid"} and meta["batch_size"] == 100
    assert "-2st-exact-b100-full" in stem and not meta["freeze_embeddings"]
    card = json.loads(next((tmp_path / "models").glob("*hybrid*/card.json")).read_text())
    assert card["batch_size"] == 100 and not card["freeze_embeddings"] and card["alpha_draw"] == "exact"
    text = render_markdown(summary, meta)
    assert "| trained parameters | all (full fine-tuning) | all |" in text and "batch 100" in text


def test_the_base_is_evaluated_as_the_experiments_evaluate_every_model(tmp_path, monkeypatch):
    """`xlir-bench experiment base` (how the reference e5-small results are made, and redone after an engine change):
    fp32, the experiments' token budget, batch 64, the current engine, written where results go."""
    pytest.importorskip("transformers")
    from conftest import make_tiny_bert

    from xlir_bench import results
    from xlir_bench.engine.core import ENGINE
    from xlir_bench.suites.records import SuiteData, SuiteDoc, SuiteQrel, SuiteQuery
    from xlir_bench.training.experiment import EVAL_BATCH_TOKENS, evaluate_as_experiments_do

    monkeypatch.setenv("XLIR_BENCH_CACHE", str(tmp_path / "cache"))
    tiny = make_tiny_bert(tmp_path, layers=1)
    docs = [SuiteDoc(f"{lang}-{i}", f"{lang} passage {i}", "", "", lang) for lang in ("en", "de") for i in range(3)]
    queries = [SuiteQuery(f"{lang}-q{i}", f"question {i}", lang, f"q{i}") for lang in ("en", "de") for i in range(3)]
    qrels = [SuiteQrel(q.query_id, f"{lang}-{q.group_id[1:]}", 1) for q in queries for lang in ("en", "de")]
    suite = SuiteData.from_records("toy", ["en", "de"], docs, queries, qrels)
    result = evaluate_as_experiments_do(f"hf:{tiny}", suite, tmp_path / "results", None, "cpu")
    written = results.read_result(results.result_path(tmp_path / "results", f"hf:{tiny}", "toy"))
    assert written["engine"] == ENGINE == result["engine"] and written["provenance"]["batch_size"] == 64
    assert written["model"]["metadata"]["batch_tokens"] == f"max_tokens={EVAL_BATCH_TOKENS}"
    assert written["model"]["metadata"]["dtype"] == "fp32"
