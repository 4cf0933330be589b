#!/usr/bin/env bash
# Debian's chromium for tests/test_report_browser.py (the HTML report opened in a real
# browser). Installed with apt-get when missing (CI runs as root); nothing when present.
# Playwright drives it (executable_path), so Playwright's own browser download is not needed.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != "0" ]; then
  echo "chromium is missing: install it (apt-get install -y chromium) and re-run" >&2
  exit 1
fi
echo "installing chromium with apt-get"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
chromium --version
