"""Base models ``xlir-bench train`` starts from: where their weights are and which prefixes they expect."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import XlirError
from ..models.trained import HUB_BASES as HUB  # the hub bases a trained plugin names


@dataclass(frozen=True)
class Base:
    name: str
    path: str
    query_prefix: str = ""
    passage_prefix: str = ""


NAMES = ("e5-small", *HUB, "hf:<id or folder>")


def resolve(name: str) -> Base:
    if name == "e5-small":
        from ..models.e5_small import converted_path

        return Base(name, str(converted_path()), "query: ", "passage: ")
    if name in HUB:
        return _available(Base(name, *HUB[name]))
    if name.startswith("hf:") and len(name) > 3:
        return _available(Base(name, name[3:]))
    raise XlirError(f"unknown base model {name!r}; choose from {', '.join(NAMES)}")


def _available(base: Base) -> Base:
    """Fail at once, in one line, when a hub base is neither cached nor downloadable (offline)."""
    from ..models.sources import read_config

    read_config(base.path, hint="--base hf:/path/to/a/downloaded/model")
    return base
