"""Dense encoders on Hugging Face transformers: any encoder by hub id or local path.

Batching: texts are tokenized once, sorted by length and cut into batches under a token budget
(``max_tokens`` = padded tokens per batch), so short sentences travel in large batches and long ones in small
batches with little padding; outputs are put back in the input order. The default budget is ``batch_size`` x
``TOKENS_PER_ROW`` of the device, on CUDA at least :func:`cuda_budget` (sized by the device's memory: big batches
keep a GPU busy), on CPU a quarter of the CUDA rows, where a matmul of ~2,000 token rows already runs at full speed
and a larger budget only adds padding (every batch is as long as its longest text). On CPU the model runs under
``torch.inference_mode`` on all cores; ``dtype=bf16`` adds autocast (fast on CPUs with AVX512-BF16 / AMX), and
``dtype=int8`` runs an int8 graph on ONNX Runtime (:mod:`.onnx_runtime` says why that scheme). ``dtype=auto``
(the default) picks by measurement (:mod:`xlir_bench.models.precision`): bf16 or fp16 autocast on CUDA, bf16 on CPUs
where a probe shows it faster, else int8 where onnxruntime is installed, else fp32.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..errors import XlirError
from ..fileio import usable_cores
from . import feed, precision
from .sources import load_pretrained, read_config

POOLINGS = ("mean", "cls")


def cuda_budget(device: str) -> int:
    """Default padded tokens per batch on a CUDA device: 1,024 per GiB of its memory, rounded down to a power of
    two, from 8,192 to 131,072 (65,536 on an 80 GB H100, 131,072 on an H200).

    Why: a forward pass is a few hundred kernel launches whatever the batch, so e5-small at ``batch_size`` 32 x 128
    = 4,096 tokens (about 20 MIRACL passages) spends its time launching kernels, not computing; tens of thousands of
    tokens per batch keep a large GPU busy. Inference activations of a base-size encoder are about 25 KB per token
    (eager attention at 512 tokens included), so this budget takes about 2.5% of the memory; a device that runs out
    anyway halves it once (:meth:`TransformersEncoder._forward_guarded`)."""
    import torch

    total = torch.cuda.get_device_properties(torch.device(device)).total_memory
    tokens = max(8192, min(131_072, (total >> 30) * CUDA_TOKENS_PER_GIB))
    return 1 << (int(tokens).bit_length() - 1)


# Default padded tokens per batch row of ``batch_size``, by device type. On the 2-core avx2 EPYC (e5-small, batch
# size 64, idle): 800 XQuAD-R German sentences took 21.7 s in fp32 with 128 (8,192 tokens a batch), 16.3 s with
# 32; 330 sentences of 11 languages 10.4 s and 7.9 s; int8 gained alike (15.6 -> 12.7 s). Padding is 16% of the
# tokens of XQuAD-R's pools at 8,192 and 5% at 2,048 (MLQA-R 8.7% and 2.4%).
TOKENS_PER_ROW = {"cpu": 32, "cuda": 128}
CUDA_TOKENS_PER_GIB = 1024  # the default CUDA budget per GiB of device memory (see cuda_budget)
SYNC_EVERY = 16  # CUDA batches queued before their vectors are copied back (one synchronisation per 16 batches)
DTYPES = ("auto", "fp32", "bf16", "fp16", "int8")


def _torch():
    try:
        import torch
    except ImportError:
        raise XlirError("neural models need torch: pip install 'xlir-bench[neural]'") from None
    return torch


def resolve_torch_device(device: str) -> str:
    return "cpu" if device in ("", "auto", None) else device


class TransformersEncoder:
    """The harness's dense-encoder protocol over a transformers model."""

    similarity = "cosine"

    def __init__(
        self,
        name_or_path: str | None = None,
        *,
        device: str = "cpu",
        pooling: str = "mean",
        normalize: bool = True,
        query_prefix: str = "",
        passage_prefix: str = "",
        max_length: int = 512,
        max_tokens: int | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        display_name: str | None = None,
        **_: Any,
    ) -> None:
        if not name_or_path:
            raise XlirError("the hf plugin needs a model: --model hf:<hub id or local folder>")
        if pooling not in POOLINGS:
            raise XlirError(f"pooling={pooling!r}; use one of {', '.join(POOLINGS)}")
        self.device = resolve_torch_device(device)
        dtype_arg = dtype
        asked = dtype or "auto"
        if asked not in DTYPES:
            raise XlirError(f"dtype={asked!r}; use one of {', '.join(DTYPES)}")
        if asked == "auto":
            dtype, reason = precision.choose(self.device)
        else:
            dtype, reason = asked, "asked for (--model-arg dtype=...)"
            problem = precision.check_runnable(dtype, self.device)
            if problem:
                raise XlirError(problem)
        # Only the config is read now; weights load on the first encode call, so a run served entirely from the
        # embedding cache never loads the model.
        self.source, self.trust_remote_code = str(name_or_path), bool(trust_remote_code)
        config, revision = read_config(self.source, trust_remote_code=self.trust_remote_code)
        self.model = self.tokenizer = self.onnx = None
        self.pooling, self.normalize, self.dtype = pooling, bool(normalize), dtype
        self.query_prefix, self.passage_prefix = str(query_prefix), str(passage_prefix)
        self.max_length = int(max_length)
        self.max_tokens = int(max_tokens) if max_tokens else None
        self._halved_budget: int | None = None  # set once, after the device ran out of memory
        self._device_budget: int | None = None
        self._notes: dict[str, int] = {}
        self.metadata = {
            "name": display_name or str(name_or_path),
            "model": str(name_or_path),
            "revision": revision,
            "dimension": int(config.hidden_size),
            "pooling": self.pooling,
            "normalize": self.normalize,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "max_length": self.max_length,
            "batch_tokens": self.budget_rule(),
            "whole_shards": True,  # the engine hands over whole shards: the feed tokenizes ahead across them
            "dtype": self.dtype,
            "precision": {"asked": asked, "reason": reason},
        }
        if dtype == "int8":
            from . import onnx_runtime

            onnx_runtime.require()
            self.metadata["precision"]["scheme"] = onnx_runtime.SCHEME
            self.metadata["batch_dependent"] = True  # dynamic activation scales: see onnx_runtime's docstring
        if dtype_arg is not None or dtype != "fp32":  # the precision that runs is shown in the label like an
            # option, except fp32, the reference: results of two precisions never share a file, and an fp32 result
            # is the model's plain name whether fp32 was asked for or chosen
            self.metadata["chosen_options"] = {"dtype": None if dtype == "fp32" else dtype}

    # -- protocol -------------------------------------------------------------------------------------------
    def encode_queries(self, texts: list[str], *, language: str, batch_size: int, progress=None) -> np.ndarray:
        return self.encode([self.query_prefix + t for t in texts], batch_size=batch_size, progress=progress)

    def encode_corpus(self, docs: list[dict], *, language: str, batch_size: int, progress=None) -> np.ndarray:
        return self.encode([self.passage_prefix + d["text"] for d in docs], batch_size=batch_size, progress=progress)

    # -- work -----------------------------------------------------------------------------------------------
    def budget_rule(self) -> str:
        """The token budget as results record it: it changes the padding, so int8 embeddings (and fp32 ones in
        the last bits)."""
        if self.max_tokens:
            return f"max_tokens={self.max_tokens}"
        if self.device.startswith("cuda"):
            return f"max(batch_size x {self.tokens_per_row()}, {self.device_budget()})"
        return f"batch_size x {self.tokens_per_row()}"

    def device_budget(self) -> int:
        """The device's own floor under the default budget (:func:`cuda_budget`; none on CPU), read once."""
        if not self.device.startswith("cuda"):
            return 0
        if self._device_budget is None:
            self._device_budget = cuda_budget(self.device)
        return self._device_budget

    def tokens_per_row(self) -> int:
        return TOKENS_PER_ROW["cuda" if self.device.startswith("cuda") else "cpu"]

    def use_token_budget(self, max_tokens: int) -> None:
        """Batch under ``max_tokens`` padded tokens from now on (and say so in the metadata)."""
        self.max_tokens = int(max_tokens)
        self.metadata["batch_tokens"] = self.budget_rule()

    def batches(self, lengths: list[int], batch_size: int) -> list[np.ndarray]:
        """Indices sorted by length (longest first), cut so that rows x longest row <= the token budget
        (:func:`.feed.plan`). The budget is ``max_tokens``, by default ``batch_size`` x ``TOKENS_PER_ROW`` padded
        tokens (on CPU, 32: a batch of 30-token sentences then holds about batch_size rows, a batch of 512-token
        passages batch_size / 16)."""
        return feed.plan(lengths, self.budget(batch_size))

    def budget(self, batch_size: int) -> int:
        """Padded tokens per batch now: the configured budget, or half of it after the device ran out of memory."""
        return self._halved_budget or self.max_tokens or max(batch_size * self.tokens_per_row(), self.device_budget())

    def load(self) -> None:
        """Load tokenizer and weights (once), quantized or moved to the device as configured."""
        if self.model is not None or self.onnx is not None:
            return
        torch = _torch()
        if self.device == "cpu":
            torch.set_num_threads(usable_cores())
        self.tokenizer, model = load_pretrained(self.source, trust_remote_code=self.trust_remote_code)
        model.eval()
        self.model = model.to(self.device)
        if self.dtype == "int8":
            self._load_int8()

    def _load_int8(self) -> None:
        """int8 through ONNX Runtime (:mod:`.onnx_runtime`): exported and quantized once per model into the cache."""
        from . import onnx_runtime

        key = {
            "source": self.source, "revision": self.metadata["revision"], "pooling": self.pooling,
            "normalize": self.normalize, "libraries": onnx_runtime.versions(),
        }  # fmt: skip
        self.onnx, info = onnx_runtime.prepare(
            self.model, self.tokenizer, pooling=self.pooling, normalize=self.normalize, key=key,
            threads=usable_cores(),
        )  # fmt: skip
        self.metadata["precision"]["int8"] = info
        # ONNX Runtime runs the layers; of the torch model only the token-embedding matrix is read (the encoder keeps
        # it through a numpy view), so the rest (~86 MB for e5-small) is released
        self.model = None

    def encoding_notes(self) -> dict[str, int]:
        """Counts since the previous call, for the result's notes: texts cut at ``max_length``, and whether the
        device ran out of memory and the token budget was halved."""
        notes, self._notes = self._notes, {}
        return {k: v for k, v in notes.items() if v}

    def _note(self, key: str, n: int) -> None:
        self._notes[key] = self._notes.get(key, 0) + int(n)

    def encode(self, texts: list[str], batch_size: int = 32, progress=None) -> np.ndarray:
        """Embeddings of ``texts`` in input order; ``progress(n)`` is called as batches of n texts finish.

        The host side (:class:`.feed.Feed`) tokenizes and pads on a background thread, a window ahead of the
        device; on CUDA the results stay on the device for :data:`SYNC_EVERY` batches, so the host never waits for
        one batch before queueing the next."""
        torch = _torch()
        self.load()
        cuda = self.device.startswith("cuda")
        out = np.zeros((len(texts), self.metadata["dimension"]), dtype=np.float32)
        batches = feed.Feed(self.tokenizer, texts, max_length=self.max_length,
                            budget=lambda: self.budget(batch_size), pin=cuda and self.onnx is None)  # fmt: skip
        pending: list[tuple[np.ndarray, Any]] = []

        def flush() -> None:
            if not pending:
                return
            rows = np.concatenate([r for r, _ in pending])
            out[rows] = torch.cat([v for _, v in pending]).float().cpu().numpy() if self.onnx is None else (
                np.concatenate([v for _, v in pending]))  # fmt: skip
            pending.clear()
            if progress is not None:
                progress(len(rows))

        with torch.inference_mode():
            for batch in batches:
                for piece in self._fit(batch, batch_size):
                    pending.extend(self._forward_guarded(piece, batch_size))
                    if not cuda or len(pending) >= SYNC_EVERY:
                        flush()
            flush()
        self._note("truncated", batches.truncated)
        return out

    def _fit(self, batch: feed.Batch, batch_size: int) -> list[feed.Batch]:
        """``batch`` as planned, or cut under the budget when it was lowered after it was planned (out of memory)."""
        budget = self.budget(batch_size)
        mask = np.asarray(batch.attention_mask)
        if len(batch.rows) * mask.shape[1] <= budget or len(batch.rows) == 1:
            return [batch]
        lengths = mask.sum(axis=1).tolist()
        pieces = []
        for part in feed.plan(lengths, budget):
            longest = max(lengths[i] for i in part)
            cols = slice(mask.shape[1] - longest, None) if self.tokenizer.padding_side == "left" else slice(0, longest)
            tokens, mask_part = batch.input_ids[part][:, cols], batch.attention_mask[part][:, cols]
            pieces.append(feed.Batch(batch.rows[part], tokens, mask_part))
        return pieces

    def _forward_guarded(self, batch: feed.Batch, batch_size: int) -> list[tuple[np.ndarray, Any]]:
        """[(rows, vectors)] of :meth:`_forward`; when the device runs out of memory, the token budget is halved
        once (said in the result's notes) and the batch is run again in pieces. A second time is an error that
        names the way out."""
        torch = _torch()
        out_of_memory = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
        try:
            return [(batch.rows, self._forward(batch))]
        except out_of_memory:
            budget = self.budget(batch_size)
            if self._halved_budget:
                raise XlirError(
                    f"{self.metadata['name']}: out of device memory at {budget} tokens per batch, after halving it "
                    f"once; pass --model-arg max_tokens=N with N below {budget} (padded tokens per batch)"
                ) from None
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            self._halved_budget = max(1, budget // 2)
            self._note("out_of_memory_halved_budget", 1)
            return [(piece.rows, self._forward(piece)) for piece in self._fit(batch, batch_size)]

    def _forward(self, batch: feed.Batch):
        """Pooled (and normalised) vectors of one batch: a device tensor, or a numpy array from ONNX Runtime."""
        if self.onnx is not None:
            return self.onnx.embed(np.asarray(batch.input_ids), np.asarray(batch.attention_mask))
        torch = _torch()
        inputs = {
            "input_ids": torch.as_tensor(batch.input_ids).to(self.device, non_blocking=True),
            "attention_mask": torch.as_tensor(batch.attention_mask).to(self.device, non_blocking=True),
        }
        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.dtype)
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.autocast(device_type, dtype=autocast, enabled=autocast is not None):
            hidden = self.model(**inputs).last_hidden_state
        hidden = hidden.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled


# The --model-arg options of every encoder built on TransformersEncoder (its keyword parameters but the harness's
# device and the factories' display name): declared on each factory, so a typo is refused (see plugins.py).
MODEL_ARGS = frozenset(
    p.name for p in inspect.signature(TransformersEncoder.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY
) - {"device", "display_name"}


def hf(name_or_path: str | None = None, **options: Any) -> TransformersEncoder:
    """``--model hf:<hub id or local folder>``: a generic encoder (mean pooling unless ``pooling=cls``)."""
    return TransformersEncoder(name_or_path, **options)


# What `xlir-bench models` checks is installed before calling a built-in "ok", and what it says to install.
NEURAL = ("torch", "transformers")
INSTALL_NEURAL = "pip install 'xlir-bench[neural]'"


def needs(*modules: str):
    """Mark a plugin factory with the modules it imports (:func:`xlir_bench.plugins.missing_modules`)."""

    def mark(factory):
        factory.requires, factory.install_hint = modules, INSTALL_NEURAL
        return factory

    return mark


hf.model_args = MODEL_ARGS
needs(*NEURAL)(hf)


def _named(model_id: str, display: str, **defaults: Any):
    def factory(**options: Any) -> TransformersEncoder:
        options.pop("name_or_path", None)
        return TransformersEncoder(model_id, display_name=display, **{**defaults, **options})

    factory.__doc__ = f"{display}: {model_id} ({', '.join(f'{k}={v!r}' for k, v in defaults.items()) or 'defaults'})"
    factory.hub_id = model_id  # `xlir-bench models` says whether the hub's weights are cached here
    factory.model_args = MODEL_ARGS
    return needs(*NEURAL)(factory)


xlmr = _named("FacebookAI/xlm-roberta-base", "xlmr", pooling="mean")
me5_small = _named("intfloat/multilingual-e5-small", "me5-small", query_prefix="query: ", passage_prefix="passage: ")
me5_base = _named("intfloat/multilingual-e5-base", "me5-base", query_prefix="query: ", passage_prefix="passage: ")
