#!/usr/bin/env bash
# Creates .venv when absent, installs the requirements, runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
wanted=$(cat requirements.txt requirements-photos.txt requirements-cutout.txt requirements-export.txt requirements-app.txt \
    requirements-browser.txt requirements-gdrive.txt requirements-hub.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    # --no-warn-conflicts: the photos wheel (scikit-image) is installed without its dependencies
    # (requirements-photos.txt), which pip would report as an ERROR on every later install (one
    # by quickstart.sh included); the pip check below reports every other conflict.
    pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-warn-conflicts)
    "${pip[@]}" -r requirements.txt -r requirements-cutout.txt -r requirements-export.txt -r requirements-app.txt \
        -r requirements-browser.txt -r requirements-gdrive.txt -r requirements-hub.txt
    "${pip[@]}" --no-deps -r requirements-photos.txt
    .venv/bin/python -m pip check --disable-pip-version-check | grep -v '^scikit-image ' | grep -v '^No broken' || true
    echo "$wanted" > "$stamp"
fi
exec .venv/bin/python -m pytest "$@"
