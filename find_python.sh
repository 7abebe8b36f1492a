# Sourced by train.sh and test.sh: PY is the project's .venv/bin/python where it exists (as
# run_tests.sh and quickstart.sh make it), else $PYTHON or python3; one that cannot import
# torch stops the script with what to do.
if [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
else
    PY=${PYTHON:-python3}
fi
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "error: $PY cannot import torch. Install the requirements into the project's .venv" \
         "(python3 -m venv .venv && .venv/bin/pip install -r requirements.txt, or ./quickstart.sh)," \
         "or set PYTHON to a Python that has them." >&2
    exit 2
fi
