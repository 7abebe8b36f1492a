#!/usr/bin/env bash
# Evaluate test.checkpoint of a config on its test set (test.merged / alpha / trimap).
set -euo pipefail
cd "$(dirname "$0")"
source ./find_python.sh
"$PY" main.py --config="${1:-config/gca-dist.toml}" --phase=test
