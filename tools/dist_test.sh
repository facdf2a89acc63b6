#!/usr/bin/env bash
# Distributed testing with torchrun, one process per GPU (gloo on a machine without CUDA).
# Multi-node: as tools/dist_train.sh (NNODES, NODE_RANK, MASTER_ADDR, PORT).
set -euo pipefail
USAGE="usage: [NNODES=1 NODE_RANK=0 MASTER_ADDR=127.0.0.1 PORT=29500] $0 CONFIG CHECKPOINT NPROC_PER_NODE [test.py args]"
source "$(dirname "${BASH_SOURCE[0]}")/launcher_lib.sh"
need_args $# CONFIG CHECKPOINT NPROC_PER_NODE
torchrun_tool "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
