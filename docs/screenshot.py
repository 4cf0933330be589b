"""Regenerate docs/report.png, the README's picture of the HTML report: a demo org audited
in a temporary directory, its report opened in headless chromium at 1,280 px.

    .venv/bin/python docs/screenshot.py     # needs the test extra (playwright) and chromium
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def main() -> None:
    from playwright.sync_api import sync_playwright

    from audit.demo import run_demo
    from audit.report import render_report

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is missing: run bash tests/install_chromium.sh")
    with tempfile.TemporaryDirectory(prefix="awu-shot-") as tmp:
        db = Path(tmp) / "demo.db"
        with contextlib.redirect_stdout(io.StringIO()):
            run_demo(db, actions=5000, seed=7)
        page_file = Path(tmp) / "report.html"
        page_file.write_text(render_report(db, "html"), encoding="utf-8")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1500})
            page.goto(page_file.as_uri())
            page.screenshot(path=str(HERE / "report.png"))
            browser.close()
    print(f"wrote {HERE / 'report.png'}")


if __name__ == "__main__":
    main()
