"""Base models ``xlir-bench train`` starts from: where their weights are and which prefixes they expect."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import XlirError


@dataclass(frozen=True)
class Base:
    name: str
    path: str
    query_prefix: str = ""
    passage_prefix: str = ""


HUB = {
    "xlmr": ("FacebookAI/xlm-roberta-base", "", ""),
    "labse": ("sentence-transformers/LaBSE", "", ""),  # trained with mean pooling over its transformer
    "me5-small": ("intfloat/multilingual-e5-small", "query: ", "passage: "),
    "me5-base": ("intfloat/multilingual-e5-base", "query: ", "passage: "),
}
NAMES = ("e5-small", *HUB, "hf:<id or folder>")


def resolve(name: str) -> Base:
    if name == "e5-small":
        from ..models.e5_small import converted_path

        return Base(name, str(converted_path()), "query: ", "passage: ")
    if name in HUB:
        return Base(name, *HUB[name])
    if name.startswith("hf:") and len(name) > 3:
        return Base(name, name[3:])
    raise XlirError(f"unknown base model {name!r}; choose from {', '.join(NAMES)}")
