#!/usr/bin/env bash
# Installs everything the test suite needs, lints, then runs the tests. Used by the README and by .ci/run.
#   - Python packages from requirements-dev.txt (into the active Python / virtual environment)
#   - Debian's chromium for the end-to-end browser test (apt-get, only when missing and we may)
#   - ruff with the project's configuration (pyproject.toml): a lint failure fails the run
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
"$PY" -m ruff check .
exec "$PY" -m pytest "$@"
