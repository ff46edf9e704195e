"""CI runs exactly the README's test command."""

from conftest import ROOT


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text().splitlines()
    fence = readme.index("```bash")
    quick_start = readme[fence + 1 : readme.index("```", fence + 1)]
    (test_command,) = [line for line in quick_start if "pytest" in line]
    assert quick_start[0].startswith("pip install torch") and "cpu" in quick_start[0]  # before what needs torch
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_generated_readme_blocks_match_committed_results():
    """README's result prose comes from results/; this fails when a block is stale (python -m xlir_bench.readme)."""
    from xlir_bench import readme

    assert readme.main(["--check"]) == 0


def test_experiment_block_quotes_the_summary_from_its_table_on(tmp_path):
    from xlir_bench import readme

    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "x.md").write_text(
        "# title\n\nCommand: c\n\n| model | mAP |\n|---|---|\n| a | 1 |\n\n- claim\n"
    )
    text = "intro\n<!-- generated: experiment x -->\nold\n<!-- /generated -->\nend\n"
    block = "| model | mAP |\n|---|---|\n| a | 1 |\n\n- claim\n"
    assert (
        readme.render(text, tmp_path) == f"intro\n<!-- generated: experiment x -->\n{block}<!-- /generated -->\nend\n"
    )
