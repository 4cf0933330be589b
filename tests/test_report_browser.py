"""The HTML report in a real browser (Debian's chromium, driven by Playwright): no console
error, no request leaving the file, every chart drawn, the findings table filters, sorts
and downloads as CSV, nothing wider than 1280 px. A full-page PNG is kept as an artefact."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, invoke

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str:
    """Debian's chromium, installed by tests/install_chromium.sh when missing."""
    found = shutil.which("chromium")
    if found is None:
        proc = subprocess.run(["bash", str(REPO / "tests" / "install_chromium.sh")],
                              capture_output=True, text=True, timeout=600)
        found = shutil.which("chromium")
        assert found is not None, (
            "chromium is needed to test the HTML report and could not be installed "
            f"(tests/install_chromium.sh): {proc.stderr.strip()[-500:]}"
        )
    return found


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium_path(), args=CHROMIUM_ARGS,
            headless=True, viewport={"width": 1280, "height": 900}, accept_downloads=True,
        )
        try:
            yield browser.pages[0] if browser.pages else browser.new_page()
        finally:
            browser.close()


def test_html_report_in_chromium(config_path: Path, labels: dict[str, Any], tmp_path: Path,
                                 browser_page: Any) -> None:
    since, until = labels["window"]["since"], labels["window"]["until"]
    assert invoke("run", "--config", str(config_path), "--since", since, "--until", until).exit_code == 0
    report = tmp_path / "report.html"
    proc = invoke("report", "--config", str(config_path), "--format", "html", "--out", str(report))
    assert proc.exit_code == 0, proc.stderr

    page = browser_page
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")

    charts = page.eval_on_selector_all(
        "svg.chart",
        """els => els.map(e => ({id: e.id, marks: e.querySelectorAll('rect.bar, polyline, circle.pt').length,
                                  w: e.getBoundingClientRect().width, h: e.getBoundingClientRect().height}))""",
    )
    ids = {c["id"] for c in charts}
    assert ids == {"chart-daily", "chart-budget", "chart-reconcile", "chart-waste", "chart-tokens",
                   "chart-lengths", "chart-pricing"}
    for c in charts:
        assert c["marks"] > 0 and c["w"] > 600 and c["h"] > 100, c
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280

    total = sum(v["count"] for v in labels["findings"].values())
    assert page.locator("#findings tbody tr:visible").count() == total
    breaches = labels["findings"]["CEILING_BREACH"]["count"]
    page.select_option("#f-kind", "CEILING_BREACH")
    assert page.locator("#findings tbody tr:visible").count() == breaches
    assert page.inner_text("#f-count") == f"{breaches} of {total} findings"
    kinds = set(page.eval_on_selector_all("#findings tbody tr:not([hidden])", "rs => rs.map(r => r.dataset.kind)"))
    assert kinds == {"CEILING_BREACH"}

    page.click("#findings th[data-key=wasted_usd]")
    page.click("#findings th[data-key=wasted_usd]")  # descending
    shown = page.eval_on_selector_all(
        "#findings tbody tr:not([hidden]) td:nth-child(7)", "tds => tds.map(t => t.textContent)")
    dollars = [float(s.replace("$", "").replace(",", "")) for s in shown]
    assert dollars == sorted(dollars, reverse=True)

    with page.expect_download() as download:
        page.click("#csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert len(rows) == breaches and {r["kind"] for r in rows} == {"CEILING_BREACH"}

    page.select_option("#f-kind", "")
    assert page.locator("#findings tbody tr:visible").count() == total
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    print(f"screenshot: {shot}")
    assert problems == []
    assert [u for u in requests if not u.startswith(("file:", "blob:", "data:"))] == []
