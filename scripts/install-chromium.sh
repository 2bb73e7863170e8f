#!/usr/bin/env bash
# Debian's headless Chromium, for the test that renders the HTML reports in a real browser
# (tests/it/report.rs). Installed with apt-get when /usr/bin/chromium is missing; the
# version is whatever the machine's Debian release ships (156 when this was written).
# Idempotent: a second run only checks.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-chromium: chromium is missing; run 'sudo apt-get install chromium'" >&2
        exit 1
    fi
    echo "install-chromium: installing chromium with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
echo "install-chromium: $(chromium --version 2>/dev/null | head -1) at $(command -v chromium)"
