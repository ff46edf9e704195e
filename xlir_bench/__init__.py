"""xlir-bench: a benchmark harness for cross-lingual and multilingual retrieval."""

__version__ = "0.1.0"
