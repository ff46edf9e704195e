"""int8 inference of a transformers encoder through ONNX Runtime: the fastest CPU precision that stays close.

Measured on an avx2-only 2-core EPYC (e5-small, XQuAD-R sentences, against torch fp32 with SDPA attention, idle
machine): ONNX Runtime fp32 1.18x torch; dynamic int8 with every linear layer quantized 1.64x, 1 - cosine to fp32
4.1e-3 (mean); with the FFN output projections kept fp32 1.52x, 1.2e-3; and the scheme used here, the same plus
smoothing, 2.3e-4 (5x closer) at the same speed. ORT's transformer fusions (Attention, SkipLayerNorm, BiasGelu)
gave nothing on top. On avx2 without VNNI one int8 projection of e5-small's shape runs only 1.2-1.6x its fp32
(``benchmarks/diagnostics/int8_ceiling.py``, two runs: 384->1536 1.55-1.58x, 1536->384 1.23-1.32x), and the rest
of the graph is unchanged, so int8 cannot reach 2x here: in the int8 graph's profile the quantized products are 44%
of the time, the fp32 ones (FFN output projections, attention) 37%; quantizing the FFN outputs too would save at
most a tenth (theirs is the slower shape).

The scheme: weights int8 per output channel (uint8, so that avx2's ``vpmaddubsw`` cannot saturate), activations
uint8 with a dynamic per-tensor scale, the FFN output projections (whose inputs, after GELU, hold per-token
outliers) kept in fp32, and **smoothing** (SmoothQuant, Xiao et al. 2023) of every quantized matmul that reads a
LayerNorm output: a few channels of a LayerNorm output are 10-100x larger than the rest, and with one scale per
tensor they leave the other channels only a few int8 levels. ``X @ W == (X / s) @ (s * W)`` for any per-channel
``s``; with ``s = max|X|^a / max|W|^(1-a)`` the outliers move into the weights, which are quantized per channel.
In a post-LN encoder (BERT, XLM-R) ``1/s`` cannot be folded into the LayerNorm (its output is also the residual),
so the graph gets one ``Mul`` per LayerNorm output (24 for e5-small, negligible time). ``max|X|`` is calibrated
on the built-in probe texts: the outlier channels are a property of the model, not of the data (calibrating on
330 MLQA-R texts instead gave the same error, 2.29e-4 vs 2.44e-4), and the benchmark's data never enters it.
Smoothing the FFN output projections as well made them worse (their outliers are per token, not per channel).
Static activation scales (ORT ``quantize_static``, MinMax on the same probes, the same matmuls) would make an
embedding independent of its batch-mates (dynamic scales move components by up to 6e-3 between batch sizes 64 and
8), but were 3-4x farther from fp32 (1 - cosine 6.7e-4 QOperator, 9.0e-4 QDQ, vs 2.1e-4; 594 XQuAD-R sentences and
594 queries, 2026-11-26) and no faster, so the scales stay dynamic and the batch size is recorded with the result.

How: the encoder's transformer (position and type embeddings, layers, pooling, normalisation) is exported once per
model with the token embedding *outside* the graph: the graph takes ``inputs_embeds``, and the token vectors are
gathered in numpy from the torch model's embedding matrix. The files then hold only the layers (42 MB of int8 for
e5-small, instead of 470 MB, most of which is its 250k-token vocabulary), so one export per fine-tuned model
stays cheap on disk.

Never assumed to work: the fp32 export, and the smoothed fp32 graph, must each reproduce torch on a probe batch
(mixed lengths and scripts, padded) to ``TOLERANCE``, or the export is discarded with a one-line error; the int8
graph's cosine to torch on the same probes is recorded in the result (``model.metadata.precision.int8``).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..errors import XlirError
from ..suites.download import cache_dir

TOLERANCE = 1e-4  # max |onnx - torch| over the components of unit-normalised probe embeddings
OPSET = 17
EXPORT_VERSION = 2  # raise when the exported graph or the quantization changes: older exports are then not reused
SMOOTH_ALPHA = 0.7  # migration strength; on e5-small 1 - cosine was 2.9e-4 at 0.5, 2.4e-4 at 0.7, 3.1e-4 at 0.85
PROBES = (
    "query: how many people live in Berlin?",
    "query: متى تأسست جامعة القاهرة؟",
    "passage: Η Αθήνα είναι η πρωτεύουσα και η μεγαλύτερη πόλη της Ελλάδας, με ιστορία άνω των 3.400 ετών.",
    "passage: भारत की राजधानी नई दिल्ली है, जो यमुना नदी के किनारे स्थित है।",
    "query: Türkiye'nin en kalabalık şehri hangisidir?",
    "passage: Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam.",
    "passage: Die Stadt hat rund 3,7 Millionen Einwohner und ist damit die bevölkerungsreichste Gemeinde Deutschlands.",
    "query: ¿Cuál es la capital de Tailandia?",
    "passage: กรุงเทพมหานครเป็นเมืองหลวงและนครที่มีประชากรมากที่สุดของประเทศไทย " * 3,
    "passage: " + "Москва — столица России, город федерального значения. " * 12,
    "query: 东京",
)


def available() -> str | None:
    """None if ONNX Runtime can be used here, else why not."""
    for module in ("onnxruntime", "onnx"):  # onnx: torch's exporter writes the graph with it
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed"
    return None


def require() -> None:
    """One error line when ONNX Runtime cannot be used here."""
    why = available()
    if why:
        raise XlirError(f"dtype=int8 runs on ONNX Runtime and {why}: pip install onnxruntime onnx")


def versions() -> dict[str, str]:
    """The libraries an export depends on (a new version exports again)."""
    from importlib import metadata

    out = {}
    for name in ("torch", "transformers", "onnx", "onnxruntime"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def export_dir(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return cache_dir() / "onnx" / digest


def pooled_module(model, pooling: str, normalize: bool):
    """A torch module: (inputs_embeds, attention_mask) -> pooled, optionally normalised sentence embeddings (what
    the encoder computes after its token embedding, as one graph to export)."""
    import torch

    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, inputs_embeds, attention_mask):
            extra = {"token_type_ids": torch.zeros_like(attention_mask)} if takes_types else {}
            hidden = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **extra).last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled

    return Pooled().eval()


class OnnxEncoder:
    """Runs the exported graph; ``embed(ids, mask)`` for one padded batch of token ids."""

    def __init__(self, path: Path, embedding: np.ndarray, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.embedding = embedding

    def embed(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        inputs = {"inputs_embeds": np.take(self.embedding, ids, axis=0), "attention_mask": mask.astype(np.int64)}
        return self.session.run(None, inputs)[0]


SCHEME = (
    "onnxruntime dynamic int8: per-channel uint8 weights, uint8 activations, LayerNorm-output matmuls smoothed"
    f" (alpha {SMOOTH_ALPHA}, calibrated on the probes), FFN output projections fp32"
)


def prepare(model, tokenizer, *, pooling: str, normalize: bool, key: dict, threads: int) -> tuple[OnnxEncoder, dict]:
    """(encoder, facts) of the int8 graph of ``model``, exported and quantized on first use (cached by ``key``)."""
    import torch

    require()
    folder = export_dir({**key, "scheme": SCHEME, "opset": OPSET, "export_version": EXPORT_VERSION})
    embedding = model.get_input_embeddings().weight.detach().to(torch.float32).cpu().numpy()  # a view, no copy
    if not (folder / "verified.json").is_file():
        problem = _export(pooled_module(model, pooling, normalize), tokenizer, embedding, folder, threads)
        if problem:
            raise XlirError(f"dtype=int8: {problem}; use dtype=fp32")
    facts = json.loads((folder / "verified.json").read_text())
    return OnnxEncoder(folder / "model-int8.onnx", embedding, threads), facts


def _probe_batch(tokenizer) -> tuple[np.ndarray, np.ndarray]:
    padded = tokenizer(list(PROBES), padding=True, truncation=True, max_length=256, return_tensors="np")
    return padded["input_ids"].astype(np.int64), padded["attention_mask"].astype(np.int64)


def _export(wrapped, tokenizer, embedding: np.ndarray, folder: Path, threads: int) -> str | None:
    """Export into a temporary folder, verify the fp32 graph against torch, quantize, then move into place; None,
    or why it failed."""
    import torch

    ids, mask = _probe_batch(tokenizer)
    embeds = torch.from_numpy(np.take(embedding, ids, axis=0))
    attention = torch.from_numpy(mask)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        with torch.inference_mode():
            expected = wrapped(embeds, attention).numpy()
        with _eager_attention(wrapped.model), warnings.catch_warnings(), open(os.devnull, "w") as sink, \
                contextlib.redirect_stdout(sink):  # fmt: skip
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped, (embeds, attention), str(tmp / "model.onnx"), input_names=["inputs_embeds", "attention_mask"],
                output_names=["embedding"], opset_version=OPSET, dynamo=False,
                dynamic_axes={"inputs_embeds": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                              "embedding": {0: "batch"}},
            )  # fmt: skip
        diff = _max_diff(tmp / "model.onnx", embedding, threads, ids, mask, expected)
        if not np.isfinite(diff) or diff > TOLERANCE:
            return f"the ONNX export differs from torch by {diff:.2e} (> {TOLERANCE:g})"
        smoothed = _smooth(tmp / "model.onnx", tmp / "model-smoothed.onnx", embedding, threads, ids, mask)
        smoothed_diff = _max_diff(tmp / "model-smoothed.onnx", embedding, threads, ids, mask, expected)
        if not np.isfinite(smoothed_diff) or smoothed_diff > TOLERANCE:
            return f"the smoothed ONNX graph differs from torch by {smoothed_diff:.2e} (> {TOLERANCE:g})"
        _quantize(tmp / "model-smoothed.onnx", tmp / "model-int8.onnx")
        got = OnnxEncoder(tmp / "model-int8.onnx", embedding, threads).embed(ids, mask)
        cosine = (got * expected).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
        facts = {"fp32_export_max_abs_diff": diff, "smoothed_max_abs_diff": smoothed_diff,
                 "smoothed_inputs": smoothed, "probe_cosine_min": round(float(cosine.min()), 6),
                 "probe_cosine_mean": round(float(cosine.mean()), 6), "probes": len(PROBES)}  # fmt: skip
        (tmp / "verified.json").write_text(json.dumps(facts))
        for checked in ("model.onnx", "model-smoothed.onnx"):  # only the int8 graph is run; these served the checks
            (tmp / checked).unlink()
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return None
    except Exception as exc:  # an architecture the exporter cannot handle
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        return f"ONNX export failed ({type(exc).__name__}: {first})"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _max_diff(path: Path, embedding, threads: int, ids, mask, expected: np.ndarray) -> float:
    return float(np.max(np.abs(OnnxEncoder(path, embedding, threads).embed(ids, mask) - expected)))


def _layernorm_inputs(graph) -> dict[str, list]:
    """LayerNorm output tensor -> the matmuls with a weight initializer that read it (and will be quantized)."""
    weights = {t.name for t in graph.initializer}
    norms = {o for n in graph.node if n.op_type == "LayerNormalization" for o in n.output[:1]}
    groups: dict[str, list] = {}
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[0] in norms and node.input[1] in weights:
            if not _is_ffn_output(node.name):
                groups.setdefault(node.input[0], []).append(node)
    return groups


def _channel_max(source: Path, tensors: list[str], embedding, threads: int, ids, mask) -> dict[str, np.ndarray]:
    """max |x| per channel of each named tensor over the probe batch's real (unpadded) tokens."""
    import onnx

    model = onnx.load(str(source))
    model.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors)
    with tempfile.TemporaryDirectory(dir=source.parent) as tmp:
        onnx.save(model, str(Path(tmp) / "probe.onnx"))
        runner = OnnxEncoder(Path(tmp) / "probe.onnx", embedding, threads)
        inputs = {"inputs_embeds": np.take(embedding, ids, axis=0), "attention_mask": mask}
        values = runner.session.run(tensors, inputs)
    real = mask.astype(bool)
    return {t: np.abs(v[real]).max(axis=0) for t, v in zip(tensors, values)}


def _smooth(source: Path, target: Path, embedding, threads: int, ids, mask) -> int:
    """Write ``source`` with every LayerNorm-output matmul smoothed (see the module docstring); the number of
    LayerNorm outputs smoothed (0 when the export has no LayerNormalization node: the graph is then unchanged)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    groups = _layernorm_inputs(graph)
    if not groups:
        shutil.copyfile(source, target)
        return 0
    act = _channel_max(source, list(groups), embedding, threads, ids, mask)
    weights = {t.name: t for t in graph.initializer}
    muls = {}
    for tensor, matmuls in groups.items():
        mats = [numpy_helper.to_array(weights[m.input[1]]) for m in matmuls]
        w_max = np.max([np.abs(w).max(axis=1) for w in mats], axis=0)
        scale = np.maximum(act[tensor], 1e-5) ** SMOOTH_ALPHA / np.maximum(w_max, 1e-5) ** (1 - SMOOTH_ALPHA)
        scale = (scale / np.exp(np.log(scale).mean())).astype(np.float32)  # geometric mean 1: weights keep their size
        inverse = numpy_helper.from_array((1 / scale).astype(np.float32), name=f"{tensor}/smooth_inverse")
        graph.initializer.append(inverse)
        muls[tensor] = onnx.helper.make_node(
            "Mul", [tensor, inverse.name], [f"{tensor}/smoothed"], name=f"{tensor}/smooth"
        )
        for matmul, w in zip(matmuls, mats):
            weights[matmul.input[1]].CopyFrom(numpy_helper.from_array(w * scale[:, None], name=matmul.input[1]))
            matmul.input[0] = f"{tensor}/smoothed"
    nodes = []
    for node in graph.node:  # each Mul right after its LayerNorm keeps the graph topologically sorted
        nodes.append(node)
        nodes.extend(muls[o] for o in node.output if o in muls)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(target))
    return len(muls)


def _quantize(source: Path, target: Path) -> None:
    """The scheme in :data:`SCHEME` (see the module docstring for why each choice)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    ffn_out = [n.name for n in graph.node if n.op_type == "MatMul" and _is_ffn_output(n.name)]
    with _root_logging_kept(), warnings.catch_warnings():
        logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice on static pre-processing does not apply
        warnings.simplefilter("ignore")
        quantize_dynamic(
            str(source), str(target), per_channel=True, weight_type=QuantType.QUInt8, nodes_to_exclude=ffn_out,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )  # fmt: skip


@contextlib.contextmanager
def _root_logging_kept():
    """The root logger's level and handlers as they were: the quantizer calls ``logging.basicConfig``, and the
    stderr handler that adds made every library's debug records print for the rest of the run (a BM25 run after an
    int8 export printed ``DEBUG:bm25s:...`` lines into the user's terminal)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def _is_ffn_output(name: str) -> bool:
    """BERT/XLM-R naming: ``layer.N/output/dense`` is the FFN's down projection (``attention/output/dense`` is not)."""
    return "/output/dense/" in name and "/attention/" not in name


@contextlib.contextmanager
def _eager_attention(model):
    """The exporter traces plain attention: the SDPA path's mask handling does not export faithfully (an export
    of it differed from torch at cosine 0.989). Restored afterwards, so a torch fallback runs as before."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    setter = getattr(model, "set_attn_implementation", None)
    with contextlib.suppress(Exception):
        setter("eager") if callable(setter) else setattr(config, "_attn_implementation", "eager")
    try:
        yield
    finally:
        if before is not None:
            with contextlib.suppress(Exception):
                setter(before) if callable(setter) else setattr(config, "_attn_implementation", before)
