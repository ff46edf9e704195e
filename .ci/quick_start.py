"""Print the command lines of README.md's quick start (its first ```bash block), one per line, for .ci/run."""

import sys
from pathlib import Path


def quick_start(text: str) -> list[str]:
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


if __name__ == "__main__":
    print("\n".join(quick_start(Path(sys.argv[1]).read_text(encoding="utf-8"))))
