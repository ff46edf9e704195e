"""A model folder with a real architecture and tokenizer but randomly initialised weights (seed 0).

For timing on machines that cannot hold or download the real weights (the lent GPU machine takes 64 MiB of
files and has no network): speed depends on the architecture and the token counts, not on the weight values.
Never use such a folder for quality figures.

Usage: python benchmarks/random_weights.py SOURCE_FOLDER TARGET_FOLDER
(SOURCE_FOLDER needs config.json and the tokenizer files; weight files in it are ignored.)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def main() -> None:
    import torch
    from transformers import AutoConfig, AutoModel

    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and path.suffix not in (".safetensors", ".bin", ".pt"):
            shutil.copy2(path, target / path.name)
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(source)
    try:
        model = AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:
        model = AutoModel.from_config(config)
    model.save_pretrained(target)
    print(f"{target}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M random parameters")


if __name__ == "__main__":
    main()
