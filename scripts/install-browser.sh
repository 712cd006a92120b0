#!/usr/bin/env bash
# Headless Chromium and its driver for the console's browser tests (tests/console/
# test_console_browser.py), from Debian's packages: chromium and chromium-driver.
# Installs them with apt-get when run as root and they are missing; otherwise says
# what to install (the tests then skip, naming the reason).
set -euo pipefail
if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    exit 0
fi
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing chromium and chromium-driver (Debian packages) for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null
else
    echo "browser tests will be skipped: install Debian's chromium and chromium-driver" \
         "(apt-get install chromium chromium-driver) to run them" >&2
fi
