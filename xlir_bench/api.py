"""The Python API: ``xlir_bench.evaluate(model, suite)`` for notebooks and other tools; the CLI calls the same engine.

>>> import xlir_bench
>>> result = xlir_bench.evaluate("bm25", "xquad-r", settings=["multilingual"])   # doctest: +SKIP
>>> result.measures["multilingual"]["mAP"]                                       # doctest: +SKIP
>>> result.to_dataframe()                                                         # doctest: +SKIP

``model`` is an entry-point name (``"e5-small"``, ``"hf:intfloat/multilingual-e5-base"``), any object implementing
:class:`~xlir_bench.plugins.Encoder` or :class:`~xlir_bench.plugins.Retriever`, or a loaded
``sentence_transformers.SentenceTransformer``. ``suite`` is a suite name (``"xquad-r"``, ``"miracl:sw,yo"``) or a
loaded suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from . import plugins, provenance, results, suites
from .errors import XlirError

ProgressCallback = Callable[[int], None]
"""What an encoder method receives as ``progress=`` when it declares that keyword: call it with the number of texts
finished (once per batch) so progress bars move per batch. Optional: without it the harness advances per call."""


class PluginMetadata(TypedDict, total=False):
    """The keys of a plugin's ``metadata`` dict that the harness reads (any other key is copied into results).

    * ``revision``: what identifies the weights (a hub commit, a digest). Without it, or ``"unknown"``, vectors are
      never cached: two different weights could not be told apart.
    * ``batch_dependent``: True when a text's vector depends on its batch-mates (dynamic int8 activation scales):
      cached vectors are then kept per batch size.
    * ``precision``: ``{"dtype": ..., "reason": ...}``, what precision was chosen and why (printed by ``run``).
    * ``chosen_options``: options the plugin chose itself (``{"dtype": "bf16"}`` for ``dtype=auto``), shown in the
      model's label like user options; a None value hides the option.
    * ``whole_shards``: True when the encoder wants a whole shard per call (it reports ``progress`` itself), e.g. to
      tokenize ahead on the host while the device runs; otherwise calls hold up to 2,048 texts.
    * ``name``, ``dimension``, ``license``, ``source``: descriptive, copied into results.

    An encoder may also have an ``encoding_notes()`` method: counts for the texts encoded since its last call
    (``{"truncated": n}``, ``{"out_of_memory_halved_budget": 1}``), kept with the vectors and shown as result
    warnings.
    """

    revision: str
    batch_dependent: bool
    precision: dict
    chosen_options: dict
    whole_shards: bool
    dtype: str
    name: str
    dimension: int
    license: str
    source: str


@dataclass
class Result:
    """One (model, suite) evaluation: the result document as the CLI writes it, plus the run's outcome."""

    document: dict
    outcome: Any = field(default=None, repr=False)

    @property
    def model(self) -> str:
        return self.document["model"]["name"]

    @property
    def suite(self) -> str:
        return self.document["suite"]["name"]

    @property
    def measures(self) -> dict[str, dict[str, float]]:
        """{setting: {measure: value}} (the headline aggregate of each setting)."""
        return {s: dict(block["metrics"]) for s, block in self.document["settings"].items()}

    @property
    def per_query(self) -> dict:
        """Per-query AP aligned with ``query_ids`` (None where a query is not in a setting)."""
        return self.document["per_query"]

    def to_dataframe(self, per_query: bool = False):
        """A pandas DataFrame: one row per (setting, group) with every measure (groups are languages or language
        pairs; the setting's aggregate has group ``"all"``), or with ``per_query=True`` one row per (setting,
        pool, query) with its AP."""
        import pandas as pd

        if per_query:
            ids, rows = self.per_query["query_ids"], []
            for setting, values in self.per_query["AP"].items():
                pools = values if isinstance(values, dict) else {"": values}
                for pool, column in pools.items():
                    rows += [{"setting": setting, "pool": pool or setting, "query_id": q, "AP": v}
                             for q, v in zip(ids, column) if v is not None]  # fmt: skip
            return pd.DataFrame(rows, columns=["setting", "pool", "query_id", "AP"])
        rows = []
        for setting, block in self.document["settings"].items():
            rows.append({"model": self.model, "suite": self.suite, "setting": setting, "group": "all",
                         **_numbers(block["metrics"])})  # fmt: skip
            for group, values in (block.get("per_language") or block.get("per_pair") or {}).items():
                rows.append({"model": self.model, "suite": self.suite, "setting": setting, "group": group,
                             **_numbers(values)})  # fmt: skip
        return pd.DataFrame(rows)

    def save(self, results_dir: str | Path | None = None) -> Path:
        """Write the result where the CLI would (``--results-dir`` semantics); returns its path."""
        path, _ = results.write_result(results.results_dir(results_dir), self.document)
        return path


def _numbers(values: dict) -> dict:
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def as_model(model, *, device: str, options: dict | None = None, name: str | None = None) -> plugins.LoadedModel:
    """An entry-point name, a protocol object or a SentenceTransformer, as the harness's loaded model."""
    if isinstance(model, plugins.LoadedModel):
        return model
    if isinstance(model, str):
        plugins.check_model_args([model], options or {})
        return plugins.load_model(model, device=device, options=options)
    if type(model).__name__ == "SentenceTransformer" and hasattr(model, "encode_query"):
        from .models.st import SentenceTransformerEncoder

        model = SentenceTransformerEncoder.wrap(model, name)
    label = name or str((getattr(model, "metadata", None) or {}).get("name") or type(model).__name__)
    target = f"{type(model).__module__}:{type(model).__qualname__}"
    return plugins.from_object(model, label, target)


def evaluate(
    model,
    suite,
    *,
    settings: Iterable[str] | None = None,
    device: str = "auto",
    batch_size: int = 32,
    run_depth: int | None = None,
    cache: bool = True,
    data_dir: str | Path | None = None,
    model_args: dict | None = None,
    name: str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> Result:
    """Evaluate ``model`` on ``suite`` exactly as ``xlir-bench run`` does, and return the :class:`Result`.

    ``settings``: a subset of monolingual, cross-lingual, multilingual (default: every setting the suite has).
    ``run_depth``: keep each query's top-k (``result.outcome.runs()``). ``cache``: reuse and store vectors of a
    model with a revision. ``name``: the label of a model object (default: its metadata name or class name).
    ``progress``: show progress bars on stderr.
    """
    from .runner import evaluate as run_engine

    resolved = provenance.resolve_device(device)
    loaded = as_model(model, device=resolved, options=model_args, name=name)
    plugins.check_metadata(loaded)
    data = suites.load(suite, data_dir) if isinstance(suite, str) else suite
    chosen = tuple(settings) if settings is not None else None
    if chosen is not None:
        from .engine.pools import SETTINGS

        unknown = [s for s in chosen if s not in SETTINGS]
        if unknown:
            raise XlirError(f"unknown setting(s) {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    bar = None
    if progress:
        from .progress import bars

        bar = bars()
    if bar is not None:
        with bar:
            document, outcome = run_engine(loaded, data, device=resolved, batch_size=batch_size, settings=chosen,
                                           run_depth=run_depth, seed=seed, progress=bar, use_cache=cache)  # fmt: skip
    else:
        document, outcome = run_engine(loaded, data, device=resolved, batch_size=batch_size, settings=chosen,
                                       run_depth=run_depth, seed=seed, use_cache=cache)  # fmt: skip
    return Result(document, outcome)
