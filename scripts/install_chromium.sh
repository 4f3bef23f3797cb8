#!/usr/bin/env bash
# Debian's chromium for the browser tests (tests/test_browser.py drives it with Playwright). Never
# `playwright install`: that downloads a browser build of its own, which cannot work offline.
# Installs with apt-get when run as root; otherwise says that the browser tests will be skipped.
set -u
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests (apt-get)"
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >/dev/null; then
    exit 0
  fi
  echo "could not install chromium: the browser tests will be skipped"
else
  echo "no $CHROMIUM and not root: the browser tests will be skipped (apt-get install chromium runs them)"
fi
