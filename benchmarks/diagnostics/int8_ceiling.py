"""How far int8 can take e5-small on this CPU: the speed of one quantized projection against fp32, and where the
int8 graph spends its time.

A diagnostic, not a benchmark: it explains the ratio ``encode_speed.py`` measures. Two parts, same threads:
1. One projection of e5-small's shape (384 -> 1536 and 1536 -> 384, 2,560 token rows: 64 sentences of 40 tokens)
   as an ONNX Runtime fp32 ``MatMul`` and as the same graph quantized the way the int8 encoder is (dynamic,
   per-channel uint8 weights): the per-matmul ceiling of int8 on this instruction set.
2. ONNX Runtime's own profile of the int8 encoder on XQuAD-R sentences, time per operator type (the fp32 ``MatMul``
   rows are the FFN output projections kept in fp32 for accuracy, and attention's two products).

Usage: XLIR_BENCH_DATA=../shared/data python benchmarks/diagnostics/int8_ceiling.py [--texts 594]
Last line: int8_matmul_vs_fp32=<ratio> int8_graph_share_fp32_matmul=<share> int8_graph_share_int8_matmul=<share>
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from xlir_bench import suites
from xlir_bench.fileio import usable_cores
from xlir_bench.models import precision
from xlir_bench.models.e5_small import converted_path
from xlir_bench.models.transformers_encoder import TransformersEncoder

INT8_OPS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "DynamicQuantizeLinear")
FP32_MATMUL_OPS = ("MatMul", "FusedMatMul")


def session(path: Path, threads: int, profile_prefix: str | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def projection_ratio(folder: Path, rows: int, shape: tuple[int, int], threads: int, repeats: int = 20) -> float:
    """fp32 time / int8 time of ``x @ W`` for one weight of ``shape``, best of ``repeats`` each, interleaved."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal(shape) * 0.05).astype(np.float32), name="W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="proj")], "proj",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, shape[1]])], [weight],
    )  # fmt: skip
    fp32, int8 = folder / f"fp32-{shape[0]}.onnx", folder / f"int8-{shape[0]}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice on static pre-processing does not apply
    quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QUInt8)
    x = rng.standard_normal((rows, shape[0])).astype(np.float32)
    runs = {name: session(path, threads) for name, path in (("fp32", fp32), ("int8", int8))}
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, sess in runs.items():
            start = time.perf_counter()
            sess.run(None, {"x": x})
            best[name] = min(best[name], time.perf_counter() - start)
    return best["fp32"] / best["int8"]


def operator_times(encoder: TransformersEncoder, texts: list[str], folder: Path, threads: int) -> dict[str, float]:
    """Kernel microseconds per operator type over one pass of ``texts`` through the int8 graph (the encoder's own
    batching, its session swapped for a profiling one)."""
    encoder.onnx.session = session(encoder.onnx.path, threads, str(folder / "profile"))
    encoder.encode(texts, batch_size=64)
    events = json.loads(Path(encoder.onnx.session.end_profiling()).read_text())
    times: dict[str, float] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[event["args"]["op_name"]] += event["dur"]
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=594)
    args = parser.parse_args()
    threads = usable_cores()
    info = precision.cpu_info()
    print(f"{info['model']}; {', '.join(info['flags']) or 'no avx512/amx/vnni flags'}; threads={threads}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ratios = [projection_ratio(folder, 2560, shape, threads) for shape in ((384, 1536), (1536, 384))]
        print(f"one projection, 2,560 rows: int8 {ratios[0]:.2f}x fp32 (384->1536), {ratios[1]:.2f}x (1536->384)")

        data = suites.load("xquad-r", os.environ.get("XLIR_BENCH_DATA"))
        per_lang = max(1, args.texts // len(data.languages))
        texts = ["passage: " + data.docs[i].text for lang in data.languages for i in data.doc_ids_in(lang)[:per_lang]]
        encoder = TransformersEncoder(str(converted_path()), device="cpu", dtype="int8")
        encoder.load()
        times = operator_times(encoder, texts, folder, threads)
    total = sum(times.values())
    for op, us in sorted(times.items(), key=lambda kv: -kv[1])[:10]:
        print(f"{op:24s} {us / 1e3:9.1f} ms {100 * us / total:5.1f}%")
    share_fp32 = sum(times.get(op, 0) for op in FP32_MATMUL_OPS) / total
    share_int8 = sum(times.get(op, 0) for op in INT8_OPS) / total
    print(
        f"int8_matmul_vs_fp32={np.mean(ratios):.2f} int8_graph_share_fp32_matmul={share_fp32:.2f} "
        f"int8_graph_share_int8_matmul={share_int8:.2f}"
    )


if __name__ == "__main__":
    main()
