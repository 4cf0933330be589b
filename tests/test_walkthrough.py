"""The README's "step by step" walkthrough, run as printed by bash (the shell is the point:
a background mock org, a wait, `kill %1`), in a fresh directory beside a `.venv` link.
Only the port changes (8443 may be taken on a test machine)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO


def _walkthrough() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Try it on the mock org, step by step", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert match is not None
    return match.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readme_walkthrough_works_as_printed(tmp_path: Path) -> None:
    script = _walkthrough()
    lines = script.strip().splitlines()
    assert lines[0] == ".venv/bin/audit demo --keep demo-org"
    port = _free_port()
    script = script.replace("--keep demo-org", f"--keep demo-org --keep-port {port}")
    script = script.replace("--port 8443", f"--port {port}")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    proc = subprocess.run(
        ["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True,
        text=True, timeout=240, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    # the demo printed exactly the two commands the README then runs
    mock_line = next(line for line in lines if " mock-org " in line).removesuffix(" &")
    run_line = next(line for line in lines if " run --config " in line)
    assert f"  {mock_line.replace('8443', str(port))}" in out.splitlines()
    assert f"  {run_line}" in out.splitlines()
    # the hand-made run audited the demo's org: at least its labelled actions
    labels = json.loads((tmp_path / "demo-org" / "org" / "labels.json").read_text())
    totals = re.findall(r"^Totals: ([\d,]+) actions", out, flags=re.M)
    assert len(totals) == 2  # the demo's, then the hand-made run's
    assert int(totals[1].replace(",", "")) >= labels["totals"]["actions"] > 0
    assert (tmp_path / "demo-org" / "report.html").stat().st_size > 20_000
    assert (tmp_path / "demo-org" / "focus.csv").read_text().startswith("BilledCost,")
    assert not (tmp_path / "demo-org" / "tls" / "ca.pem").exists()  # the mock org was stopped
