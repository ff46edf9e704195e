"""Suite registry: names the harness accepts for ``--suite`` and how to load each one."""

from __future__ import annotations

import os

from ..errors import XlirError
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
    """Expand ``all`` and check every name, keeping the order given."""
    out: list[str] = []
    for name in names:
        expanded = list(SUITES) if name == "all" else [name]
        for item in expanded:
            if item not in SUITES:
                raise XlirError(f"unknown suite {item!r}; choose from {', '.join(SUITES)} or all")
            if item not in out:
                out.append(item)
    return out


def load(name: str, data_dir: str | os.PathLike | None = None) -> SuiteData:
    return SUITES[resolve([name])[0]].load(data_dir)


__all__ = ["SUITES", "SuiteData", "SuiteDoc", "SuiteQrel", "SuiteQuery", "load", "resolve"]
