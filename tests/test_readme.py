"""CI runs exactly the README's test command."""

from conftest import ROOT


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text().splitlines()
    fence = readme.index("```bash")
    quick_start = readme[fence + 1 : readme.index("```", fence + 1)]
    (test_command,) = [line for line in quick_start if "pytest" in line]
    assert quick_start[0].startswith("pip install torch") and "cpu" in quick_start[0]  # before what needs torch
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()
