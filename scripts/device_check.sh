#!/usr/bin/env bash
# The GPU device check in one command (docs/gpu.md).
#
#   bash scripts/device_check.sh prepare            # here, with the registry: build the wheelhouse
#   bash scripts/device_check.sh run OUT [ARGS...]  # on the CUDA machine (no registry needed)
#
# The CUDA machines have torch, numpy and timm but not mmengine/mmcv, which rmt_mm.models imports
# (BaseModule, DropPath, build_norm_layer). `prepare` puts pure-Python wheels of them in
# work_dirs/device_wheels (git-ignored; carry that folder to the device): mmengine and its pure
# dependencies, mmcv built without its compiled ops ("lite"), and opencv-python-headless, which
# `import mmcv` needs. `run` installs them offline with --no-deps into the machine's Python, only
# if `import rmt_mm.models` fails, then runs tools/device_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${DEVICE_WHEELS:-work_dirs/device_wheels}
PY=${PYTHON:-python}

# mmengine 0.10.7 and the modules its import chain reaches, all py3-none-any, plus the abi3
# OpenCV wheel (any CPython >= 3.7; 4.10 is the smallest that supports numpy 2, ~50 MB, to stay
# well inside the 64 MiB a device run may carry).
PURE="mmengine==0.10.7 addict yapf termcolor rich pygments markdown-it-py mdurl platformdirs
      packaging pyyaml"

prepare() {
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d "$WHEELS" \
    $PURE opencv-python-headless==4.10.0.84
  # mmcv's sdist without ops is pure Python: build it once into a py3 wheel, in a scratch venv
  # (its setup.py imports pkg_resources, which setuptools 82 removed).
  tmp=$(mktemp -d)
  "$PY" -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install -q 'setuptools<82' wheel
  "$tmp/venv/bin/pip" download -q --no-deps --no-build-isolation --no-binary=:all: -d "$tmp" \
    mmcv==2.1.0
  MMCV_WITH_OPS=0 "$tmp/venv/bin/pip" wheel --no-deps --no-build-isolation -w "$WHEELS" \
    "$tmp"/mmcv-2.1.0.tar.gz
  rm -rf "$tmp"
  du -sh "$WHEELS"
}

run() {
  out=${1:?usage: device_check.sh run OUT [ARGS...]}; shift
  if ! "$PY" -c 'import rmt_mm.models' 2>/dev/null; then
    "$PY" -m pip install --no-deps --no-index "$WHEELS"/*.whl
    "$PY" -m pip install --no-deps --no-build-isolation --no-index -e . >/dev/null \
      || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
  exec "$PY" tools/device_check.py --out "$out" "$@"
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 prepare | run OUT [ARGS...]" >&2; exit 2 ;;
esac
