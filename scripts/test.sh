#!/usr/bin/env bash
# Installs everything the test suite needs, then runs it. Used by the README and by .ci/run.
#   - Python packages from requirements-dev.txt (into the active Python / virtual environment)
#   - Debian's chromium for the end-to-end browser test (apt-get, only when missing and we may)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
"$PY" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the browser test..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser test will be skipped"
  elif command -v sudo >/dev/null; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser test will be skipped"
  else
    echo "warning: /usr/bin/chromium missing and cannot be installed here; the browser test will be skipped"
  fi
fi
exec "$PY" -m pytest "$@"
