#!/usr/bin/env bash
# Creates .venv when absent, installs the requirements, runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
wanted=$(cat requirements.txt requirements-photos.txt requirements-cutout.txt requirements-export.txt requirements-app.txt requirements-browser.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
    # Before the --no-deps photos wheel: pip would otherwise report that wheel's skipped dependencies.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-cutout.txt
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-export.txt
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-app.txt
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-browser.txt
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-photos.txt
    echo "$wanted" > "$stamp"
fi
exec .venv/bin/python -m pytest "$@"
