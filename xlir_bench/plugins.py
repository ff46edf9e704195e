"""Model plugins: the two protocols a model can implement, and discovery through entry points.

A plugin is an entry point in the group ``xlir_bench.models``; its name is the ``--model`` value and it loads a
callable (a class or a factory). The harness calls it with keyword options only (``device=`` and the user's
``--model-arg key=value`` pairs), so plugins should accept ``**kwargs``. A plugin may say which options it takes
(a ``model_args`` attribute on the callable, or a signature without ``**kwargs``): it then gets only those, its
label shows only those, and an option that no model of a run takes is refused before any work (a typo such as
``dytpe=bf16`` would otherwise be ignored while naming the result). Nothing is imported until a model is listed or
used: discovery reads distribution metadata only.

A name ``prefix:argument`` that is not itself registered calls the plugin ``prefix`` with
``name_or_path=argument`` (``--model hf:intfloat/multilingual-e5-base``, ``--model st:/models/my-encoder``).

The returned object implements one of two protocols:

* :class:`Encoder` (dense): ``encode_queries`` / ``encode_corpus`` return (n, d) float arrays; scores are cosine
  similarity unless ``similarity = "dot"``. A method that declares a ``progress`` keyword gets a callable to call
  with the number of texts it finished (once per batch), so progress bars move per batch.
* :class:`Retriever` (scoring, e.g. BM25): ``build_index(docs)`` returns an index whose
  ``score(queries, *, language)`` gives the (n_queries, n_docs) score matrix against the indexed docs.

Both may carry a ``metadata`` dict (name, revision, dimension, license, ...) that is copied into results. An
encoder sets ``batch_dependent: True`` there when a text's vector depends on the other texts of its batch (dynamic
int8 activation scales): its cached vectors are then kept per batch size.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata as importlib_metadata
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from .errors import XlirError

GROUP = "xlir_bench.models"
MAX_ARG_CHARS = 10_000


@runtime_checkable
class Encoder(Protocol):
    def encode_queries(self, texts: list[str], *, language: str, batch_size: int) -> np.ndarray: ...

    def encode_corpus(self, docs: list[dict], *, language: str, batch_size: int) -> np.ndarray: ...


class ScoringIndex(Protocol):
    def score(self, queries: list[str], *, language: str) -> np.ndarray: ...


@runtime_checkable
class Retriever(Protocol):
    def build_index(self, docs: list[dict]) -> ScoringIndex: ...


@dataclass
class PluginInfo:
    """One discovered entry point, and whether it loads."""

    name: str
    target: str
    distribution: str
    error: str | None = None
    shadows: list[str] = field(default_factory=list)  # other registrations of the name, not used
    factory: Any = None  # what the entry point loads to, when discovered with check


@dataclass
class LoadedModel:
    """A constructed plugin plus what the harness needs to know about it."""

    name: str
    plugin: Any
    kind: str  # "dense" or "scoring"
    similarity: str
    info: PluginInfo
    options: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def label(self) -> str:
        """The name results and tables use: the model name plus any user options, e.g. ``e5-small[dtype=bf16]``,
        so runs of one model with different options never overwrite each other. Options a plugin chose for itself
        and publishes as ``metadata["chosen_options"]`` (the precision ``dtype=auto`` picked) are shown the same way;
        a chosen value of None hides the option (fp32, the reference precision, is never shown).
        Computed once: progress rows ask for it per batch, and a run's label (its file name) must not change."""
        chosen = self.metadata.get("chosen_options")  # what the plugin chose itself (dtype=auto -> bf16); None hides
        options = {**self.options, **(chosen if isinstance(chosen, dict) else {})}  # an option (dtype=fp32)
        shown = {k: v for k, v in sorted(options.items()) if k != "name_or_path" and v is not None}
        if not shown:
            return self.name
        return self.name + "[" + ",".join(f"{k}={v}" for k, v in shown.items()) + "]"

    def encoding_notes(self) -> dict[str, int]:
        """The plugin's counts for the texts encoded since the last call (its optional ``encoding_notes()``, e.g.
        ``{"truncated": 3}``): positive integers only; {} for a plugin without it."""
        if not callable(getattr(self.plugin, "encoding_notes", None)):
            return {}
        notes = self.call("encoding_notes")
        if not isinstance(notes, dict):
            return {}
        return {str(k): int(v) for k, v in notes.items() if isinstance(v, int | np.integer) and v > 0}

    @property
    def metadata(self) -> dict:
        try:
            meta = getattr(self.plugin, "metadata", None)
        except Exception as exc:  # noqa: BLE001 - a property of the plugin's
            raise XlirError(f"model plugin {self.name!r}: reading its metadata failed: {exc}") from None
        return dict(meta) if isinstance(meta, dict) else {}

    def call(self, method: str, *args, target: Any = None, **kwargs):
        """Call ``method`` on the plugin (or on ``target``, an object it returned, such as an index).

        Any exception becomes one line naming the plugin and the method.
        """
        progress = kwargs.pop("progress", None)
        try:
            function = getattr(self.plugin if target is None else target, method)
            if progress is not None and accepts_progress(function):
                kwargs["progress"] = progress
            return function(*args, **kwargs)
        except XlirError:
            raise
        except BaseException as exc:  # noqa: BLE001 - a plugin may raise anything, sys.exit() included
            raise plugin_failure(exc, f"model plugin {self.name!r} failed in {method}") from None


def accepts_progress(function) -> bool:
    """Whether a plugin method takes the optional ``progress`` keyword (a callable it calls with the number of
    texts finished, e.g. once per batch). Plugins without it are advanced once per call by the harness."""
    import inspect

    try:
        return "progress" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def plugin_failure(exc: BaseException, context: str) -> BaseException:
    """The one-line error for anything a plugin raised. ``SystemExit`` is not an ``Exception``: a plugin calling
    ``sys.exit(0)`` would otherwise end the harness quietly with status 0 and no result. Ctrl-C stays Ctrl-C."""
    if isinstance(exc, KeyboardInterrupt):
        return exc
    if isinstance(exc, SystemExit):
        return XlirError(f"{context}: it called sys.exit({exc.code!r}); a plugin must raise an exception instead")
    return XlirError(f"{context}: {type(exc).__name__}: {exc}")


OWN_DISTRIBUTION = "xlir-bench"


def _dist_name(ep: importlib_metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.metadata["Name"]) if dist is not None else ""


def _all_entry_points() -> dict[str, list[importlib_metadata.EntryPoint]]:
    """Every registration of every name, the one that is used first.

    xlir-bench's own built-ins win over other distributions registering the same name (a package cannot silently
    take over ``bm25``); among others, the first on ``sys.path`` wins, as for console scripts."""
    found: dict[str, list[importlib_metadata.EntryPoint]] = {}
    seen: set[tuple[str, str, str]] = set()
    for ep in importlib_metadata.entry_points(group=GROUP):
        key = (ep.name, ep.value, _dist_name(ep))
        if key in seen:  # the same distribution seen twice on sys.path (e.g. an editable install)
            continue
        seen.add(key)
        found.setdefault(ep.name, []).append(ep)
    for eps in found.values():
        eps.sort(key=lambda ep: _dist_name(ep).lower().replace("_", "-") != OWN_DISTRIBUTION)  # stable
    return found


def _entry_points() -> dict[str, importlib_metadata.EntryPoint]:
    return {name: eps[0] for name, eps in _all_entry_points().items()}


def _distribution(ep: importlib_metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "unknown"


def shadowed(name: str) -> list[str]:
    """The registrations of ``name`` that are *not* used ("distribution -> target"), for warnings and listings."""
    return [f"{_distribution(ep)} -> {ep.value}" for ep in _all_entry_points().get(name, [])[1:]]


def discover(check: bool = True) -> list[PluginInfo]:
    """Every plugin in the entry-point group; with ``check`` each is imported so broken ones are reported."""
    infos = []
    for name, eps in sorted(_all_entry_points().items()):
        ep = eps[0]
        info = PluginInfo(name, ep.value, _distribution(ep), shadows=shadowed(name))
        if check:
            try:
                target = info.factory = ep.load()
                if not callable(target):
                    info.error = f"{ep.value} is not callable"
            except Exception as exc:  # noqa: BLE001 - report, never crash the listing
                info.error = f"{type(exc).__name__}: {exc}"
        infos.append(info)
    return infos


def parse_model_args(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``key=value`` pairs to keyword options; values read as Python literals when they are one (1, 0.5, True)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise XlirError(f"bad --model-arg {pair!r}; write it as key=value, e.g. --model-arg k1=1.2")
        lowered = raw.strip().lower()
        if len(raw) > MAX_ARG_CHARS:
            raise XlirError(f"--model-arg {key.strip()}: value of {len(raw):,} characters (at most {MAX_ARG_CHARS:,})")
        if lowered in ("true", "false"):
            value: Any = lowered == "true"
        else:
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError, TypeError):
                value = raw
            except (RecursionError, MemoryError):
                raise XlirError(
                    f"--model-arg {key.strip()}: the value is nested too deeply to read; pass a flat value"
                ) from None
        options[key.strip()] = value
    return options


HARNESS_KEYWORDS = frozenset({"device", "name_or_path"})  # passed by the harness, never --model-arg options


def accepted_options(factory: Any) -> frozenset[str] | None:
    """The ``--model-arg`` names a plugin's callable takes, or None when it does not say (it then gets them all).

    It says so with a ``model_args`` attribute (names), or with a signature that has no ``**kwargs``."""
    declared = getattr(factory, "model_args", None)
    if declared is not None:
        return frozenset(declared) - HARNESS_KEYWORDS
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    named = (p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return frozenset(named) - HARNESS_KEYWORDS


def missing_modules(factory: Any) -> list[str]:
    """The Python modules a plugin says it needs (a ``requires`` attribute of module names) that are not installed:
    ``xlir-bench models`` says what to install instead of calling it "ok" (a bare ``pip install xlir-bench`` has no
    torch). Nothing is imported to find out."""
    import importlib.util

    missing = []
    for module in getattr(factory, "requires", ()) or ():
        try:
            found = importlib.util.find_spec(str(module)) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(str(module))
    return missing


def install_needed(factory: Any) -> str | None:
    """ "needs <install hint> (not installed: <modules>)" for a plugin whose modules are missing, else None: what
    ``models`` lists and what ``run`` refuses with."""
    missing = missing_modules(factory)
    if not missing:
        return None
    hint = getattr(factory, "install_hint", None) or "the packages that provide them"
    return f"needs {hint} (not installed: {', '.join(missing)})"


def check_installed(name: str) -> None:
    """Refuse, before any work, a model that is not registered or whose modules are not installed (one line)."""
    _require_installed(name, _resolve(name).factory)


def _require_installed(name: str, factory: Any) -> None:
    needed = install_needed(factory)
    if needed:  # one line naming the install, not the first ImportError the plugin happens to meet
        raise XlirError(f"model {name!r} {needed}")


def check_model_args(names: list[str] | tuple[str, ...], options: dict[str, Any]) -> None:
    """Refuse, before any work, an option that no model of the run takes (when every model says what it takes)."""
    if not options:
        return
    takes = {}
    for name in names:
        accepted = _resolve(name).accepted
        if accepted is None:
            return
        takes[name] = accepted
    unused = sorted(set(options) - set().union(*takes.values()))
    if unused:
        what = "; ".join(f"{n} takes {', '.join(sorted(a)) or 'none'}" for n, a in takes.items())
        raise XlirError(f"--model-arg {', '.join(unused)}: no model of this run takes it ({what})")


class _Resolved(NamedTuple):
    """What a ``--model`` value names: its entry point, the callable behind it and the options that callable takes."""

    entry_point: importlib_metadata.EntryPoint
    argument: str | None  # the name_or_path of "hf:org/model", else None
    factory: Callable[..., Any]
    accepted: frozenset[str] | None


def _resolve(name: str) -> _Resolved:
    """One way from a model name to its callable, for the pre-run option check and for loading alike."""
    ep, argument = find_entry_point(name)
    try:
        factory = ep.load()
    except XlirError:
        raise
    except BaseException as exc:  # noqa: BLE001
        raise plugin_failure(exc, f"model plugin {name!r} ({_distribution(ep)}) failed to load") from None
    return _Resolved(ep, argument, factory, accepted_options(factory))


def find_entry_point(name: str) -> tuple[importlib_metadata.EntryPoint, str | None]:
    """(entry point, ``name_or_path`` argument or None) for a ``--model`` value; unknown names are one error."""
    eps = _entry_points()
    prefix, sep, argument = name.partition(":")
    if name not in eps and sep and prefix in eps:
        # "hf:org/model" -> the "hf" plugin called with name_or_path="org/model"
        return eps[prefix], argument
    if name not in eps:
        valid = ", ".join(sorted(eps)) or "none installed"
        raise XlirError(f"unknown model {name!r}; installed model plugins: {valid} (see `xlir-bench models`)")
    return eps[name], None


def load_model(name: str, *, device: str, options: dict[str, Any] | None = None) -> LoadedModel:
    """Construct the plugin registered as ``name`` and check which protocol it implements."""
    options = dict(options or {})
    ep, argument, factory, accepted = _resolve(name)
    if argument is not None:
        options["name_or_path"] = argument
    info = PluginInfo(name, ep.value, _distribution(ep), shadows=shadowed(ep.name))
    _require_installed(name, factory)
    if accepted is not None:  # options meant for another model of the run: not passed, not in the label
        options = {k: v for k, v in options.items() if k in accepted or k in HARNESS_KEYWORDS}
    try:
        plugin = factory(device=device, **options)
    except XlirError:
        raise
    except BaseException as exc:  # noqa: BLE001
        raise plugin_failure(exc, f"model plugin {name!r} ({info.distribution}) failed to load") from None
    return _loaded(name, plugin, info, options)


def _loaded(name: str, plugin: Any, info: PluginInfo, options: dict[str, Any]) -> LoadedModel:
    """Which protocol ``plugin`` implements, checked once for every way a model arrives."""
    if isinstance(plugin, Encoder):
        kind = "dense"
        similarity = str(getattr(plugin, "similarity", "cosine"))
        if similarity not in ("cosine", "dot"):
            raise XlirError(f"model plugin {name!r} has similarity={similarity!r}; use 'cosine' or 'dot'")
    elif isinstance(plugin, Retriever):
        kind, similarity = "scoring", "score"
    else:
        raise XlirError(
            f"model plugin {name!r} returned {type(plugin).__name__}, which has neither encode_queries/encode_corpus "
            "nor build_index; see the plugin protocol in the README"
        )
    return LoadedModel(name, plugin, kind, similarity, info, options)


def from_object(plugin: Any, name: str, target: str) -> LoadedModel:
    """A model object handed over directly (the Python API), not found through an entry point."""
    return _loaded(name, plugin, PluginInfo(name, target, "python object"), {})


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_matrix(value: Any, rows: int, model: str, what: str, cols: int | None = None) -> np.ndarray:
    """Validate a plugin's output: a finite 2-D float array with the expected shape."""
    try:
        array = np.asarray(value)
    except Exception as exc:  # noqa: BLE001
        raise XlirError(
            f"model plugin {model!r}: {what} returned {type(value).__name__}, not an array ({exc})"
        ) from None
    if array.ndim != 2 or array.shape[0] != rows or (cols is not None and array.shape[1] != cols):
        want = f"({rows}, {cols if cols is not None else 'd'})"
        raise XlirError(f"model plugin {model!r}: {what} returned shape {array.shape}, expected {want}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise XlirError(f"model plugin {model!r}: {what} returned dtype {array.dtype}, expected floats")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise XlirError(f"model plugin {model!r}: {what} returned {bad} NaN/inf values")
    largest = float(np.abs(array).max()) if array.size else 0.0
    if largest > FLOAT32_MAX:  # stored and scored as float32 (as trec_eval holds scores): they would become inf
        raise XlirError(
            f"model plugin {model!r}: {what} returned values up to {largest:.3g}, beyond float32's range "
            f"({FLOAT32_MAX:.3g}) in which vectors are stored and scored; scale or normalise them"
        )
    return array


def check_metadata(model: LoadedModel) -> None:
    """Before any encoding: the plugin's metadata must go into a result file as JSON (strings, finite numbers,
    lists, objects), or the run would be thrown away at the end."""
    import json

    try:
        json.dumps(model.metadata, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise XlirError(
            f"model plugin {model.name!r}: its metadata cannot be written to a result ({exc}); "
            "use strings, finite numbers, lists and objects only"
        ) from None
