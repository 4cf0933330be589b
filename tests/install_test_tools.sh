#!/usr/bin/env bash
# What the test suite needs beyond Python, installed once each and only when missing:
# Debian's chromium (the HTML report opened in a real browser) and Node 22 + the
# Salesforce CLI (the mock org checked with the official `sf`). The first step of the
# README's test command and of .ci/run, so no test ever installs anything itself.
set -euo pipefail
here="$(dirname "$0")"
bash "$here/install_chromium.sh"
bash "$here/install_sf_cli.sh"
