#!/usr/bin/env bash
# The GPU device check in one command (docs/gpu.md):
#
#   bash scripts/device_check.sh OUT [ARGS...]   # on the CUDA machine: python tools/device_check.py
#
# The check needs only torch: rmt_mm.models and rmt_mm.benchmark are plain PyTorch, so the
# checkout runs from its folder (PYTHONPATH) without installing anything.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: device_check.sh OUT [ARGS...]}; shift
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" tools/device_check.py \
  --out "$out" "$@"
