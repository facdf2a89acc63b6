#!/usr/bin/env bash
# Distributed training with torchrun, one process per GPU (gloo on a machine without CUDA).
# Multi-node: run it on every node with the same NNODES, MASTER_ADDR (node 0's address) and
# PORT, and NODE_RANK set to that node's rank, 0 to NNODES-1 (docs/cluster.md).
set -euo pipefail
USAGE="usage: [NNODES=1 NODE_RANK=0 MASTER_ADDR=127.0.0.1 PORT=29500] $0 CONFIG NPROC_PER_NODE [train.py args]"
source "$(dirname "${BASH_SOURCE[0]}")/launcher_lib.sh"
need_args $# CONFIG NPROC_PER_NODE
torchrun_tool "$2" train.py "$1" --launcher pytorch "${@:3}"
