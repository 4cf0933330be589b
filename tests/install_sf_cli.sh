#!/usr/bin/env bash
# Node 22 and the Salesforce CLI for tests/test_sf_cli.py, installed once per pinned
# version under ~/.cache/awu-audit/sf-cli (or $AWU_SF_CLI_DIR): ~40-50 s cold, ~25 s with
# a warm npm cache, nothing when installed. The npm package `node` ships a Node binary, so
# an older system Node (20) is fine. AWU_SKIP_SF_CLI=1 skips it (and those tests).
set -euo pipefail
[ "${AWU_SKIP_SF_CLI:-}" = "1" ] && exit 0
SF_CLI_DIR="${AWU_SF_CLI_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/awu-audit/sf-cli}"
SF_CLI_PACKAGES="node@22.23.3 @salesforce/cli@2.146.3"
[ "$(cat "$SF_CLI_DIR/.installed" 2>/dev/null)" = "$SF_CLI_PACKAGES" ] && exit 0
echo "installing $SF_CLI_PACKAGES into $SF_CLI_DIR"
rm -rf "$SF_CLI_DIR" && mkdir -p "$SF_CLI_DIR"
# shellcheck disable=SC2086
npm install --prefix "$SF_CLI_DIR" --no-audit --no-fund --loglevel=error $SF_CLI_PACKAGES
SF_DISABLE_TELEMETRY=true SF_AUTOUPDATE_DISABLE=true HOME="$(mktemp -d)" \
  PATH="$SF_CLI_DIR/node_modules/.bin:$PATH" sf --version
echo "$SF_CLI_PACKAGES" > "$SF_CLI_DIR/.installed"
