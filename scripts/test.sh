#!/usr/bin/env bash
# Installs everything the tests need, then runs the checks CI runs: lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Servers the integration tests start on loopback ports, and a browser.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
# The deployment docs' nginx test makes a throw-away TLS certificate with it.
command -v openssl >/dev/null || missing+=(openssl)
# The dashboard's browser test drives it through Playwright (tests/test_dashboard.py).
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} from Debian's packages"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
pip_log=$(mktemp)
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' >"$pip_log" 2>&1; then
  cat "$pip_log"
  exit 1
fi
rm -f "$pip_log"

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
