"""Built-in model plugins. Each is registered under the ``xlir_bench.models`` entry-point group in pyproject."""
