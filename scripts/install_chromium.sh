#!/usr/bin/env bash
# The browser of the UI test (tests/e2e/test_ui.py): Debian's Chromium, driven by Playwright. Playwright's own
# browser download does not work on a machine without a route out, and is not needed.
set -euo pipefail
command -v chromium >/dev/null && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "Installing Debian's chromium package for the UI test ..."
$sudo apt-get install -y -q --no-install-recommends chromium >/dev/null \
  || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends chromium >/dev/null; }
chromium --version
