#!/usr/bin/env bash
# Testing on a Slurm cluster with srun, one task per GPU; GPUS=0 runs TASKS CPU tasks (gloo)
# and asks for no GPU (docs/cluster.md).
set -euo pipefail
USAGE="usage: [GPUS=8 GPUS_PER_NODE=8 | GPUS=0 TASKS=2 TASKS_PER_NODE=2] [CPUS_PER_TASK=5 SRUN_ARGS=...] $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args]"
source "$(dirname "${BASH_SOURCE[0]}")/launcher_lib.sh"
need_args $# PARTITION JOB_NAME CONFIG CHECKPOINT
srun_tool "$1" "$2" test.py "$3" "$4" --launcher=slurm "${@:5}"
