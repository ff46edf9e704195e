"""xlir-bench: a benchmark harness for cross-lingual and multilingual retrieval.

The public API: :func:`evaluate` returns a :class:`Result`; models implement :class:`Encoder` or :class:`Retriever`
(their ``metadata`` keys: :class:`PluginMetadata`; the ``progress=`` keyword: :data:`ProgressCallback`).
"""

__version__ = "0.1.0"

from .api import PluginMetadata, ProgressCallback, Result, evaluate  # noqa: E402
from .plugins import Encoder, Retriever  # noqa: E402

__all__ = ["Encoder", "PluginMetadata", "ProgressCallback", "Result", "Retriever", "evaluate", "__version__"]
