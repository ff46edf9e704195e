"""Suite registry: names the harness accepts for ``--suite`` and how to load each one."""

from __future__ import annotations

import os

from ..errors import XlirError
from . import miracl
from .lareqa import LareqaSuite
from .records import SuiteData, SuiteDoc, SuiteQrel, SuiteQuery

SUITES: dict[str, LareqaSuite] = {
    "xquad-r": LareqaSuite(
        "xquad-r",
        "xquad-r",
        ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"),
        "XQuAD-R (LAReQA): 1,190 questions 11-way parallel, 13,014 candidate sentences",
        "CC BY-SA 4.0",
    ),
    "mlqa-r": LareqaSuite(
        "mlqa-r",
        "mlqa-r",
        ("ar", "de", "en", "es", "hi", "vi", "zh"),
        "MLQA-R (LAReQA): MLQA dev, 1,148 questions in 2-4 languages, 20,534 candidate sentences",
        "CC BY-NC 4.0",
    ),
}


def resolve(names: tuple[str, ...] | list[str]) -> list[str]:
    """Expand ``all`` (the LAReQA suites: MIRACL is large, so only by name) and check every name, in order.

    ``miracl`` means its 18 languages, ``miracl:sw,yo`` a subset (normalised to the canonical language order).
    """
    out: list[str] = []
    for name in names:
        expanded = list(SUITES) if name == "all" else [name]
        for item in expanded:
            langs = miracl.parse_name(item)
            if langs is not None:
                item = miracl.suite_name(langs)
            elif item not in SUITES:
                raise XlirError(
                    f"unknown suite {item!r}; choose from {', '.join(SUITES)}, miracl, miracl:<lang,lang,...> or all"
                )
            if item not in out:
                out.append(item)
    return out


def is_miracl(name: str) -> bool:
    return miracl.parse_name(name) is not None


def load(name: str, data_dir: str | os.PathLike | None = None):
    """A LAReQA suite in memory (:class:`SuiteData`), or MIRACL's topics with its corpora as streams."""
    name = resolve([name])[0]
    langs = miracl.parse_name(name)
    if langs is not None:
        return miracl.load(langs, data_dir)
    return SUITES[name].load(data_dir)


__all__ = ["SUITES", "is_miracl", "miracl", "SuiteData", "SuiteDoc", "SuiteQrel", "SuiteQuery", "load", "resolve"]
