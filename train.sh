#!/usr/bin/env bash
# Train on 4 GPUs of this machine (as published; torchrun replaces torch.distributed.launch).
# More nodes: run on each node
#   torchrun --nnodes=N --nproc_per_node=4 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 main.py --config=...
# Arguments after the config go to main.py (--resume latest_model, --overwrite).
set -euo pipefail
cd "$(dirname "$0")"
source ./find_python.sh
CONFIG=${1:-config/gca-dist.toml}
NPROC=${NPROC:-4}
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$PY" -m torch.distributed.run --nproc_per_node="$NPROC" main.py \
    --config="$CONFIG" "${@:2}"
