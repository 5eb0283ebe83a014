#!/usr/bin/env bash
# Debian's Chromium for the browser test (tests/gateway/test_page.py, driven by Playwright:
# no browser is downloaded). Where it cannot be installed this says why and exits 0: the
# test then says so and is skipped, except in CI (GPUX_REQUIRE_BROWSER=1), where it fails.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    else
        echo "gpux: Chromium is not installed and apt-get needs root; the browser test will be skipped" >&2
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "gpux: Chromium is not installed and there is no apt-get; the browser test will be skipped" >&2
    exit 0
fi
echo "gpux: installing Debian's chromium for the browser test"
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null; }; then
    echo "gpux: apt-get could not install chromium; the browser test will be skipped" >&2
fi
exit 0
