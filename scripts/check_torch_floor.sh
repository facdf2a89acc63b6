#!/usr/bin/env bash
# Run the tests that do not need mmcv's compiled ops on the declared torch floor (torch 2.4.1)
# with numpy 1.26.4 and the OpenMMLab stack's Python packages, in a throw-away venv.
#
# PyPI's torch 2.4.1 for Linux is the CUDA 12.1 build: about 3 GB with its nvidia-* wheels
# (it runs on CPU). mmcv's compiled ops must match torch's ABI; the mmcv wheel used here is built
# for torch 2.13 (scripts/setup_env.sh), so the tests that import mmcv.ops, i.e. mmdet/mmseg
# models, fail with an ImportError in this venv; build mmcv against 2.4.1 to run those too.
#
# Environment: FLOOR_VENV (default: a new temporary directory), RMT_MM_WHEELHOUSE or
# ../shared/wheels (the mmcv wheel), PYTHON (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FLOOR_VENV:-$(mktemp -d)/venv}"
WHEELHOUSE="${RMT_MM_WHEELHOUSE:-$ROOT/../shared/wheels}"
MMCV_WHEEL="$(compgen -G "$WHEELHOUSE/mmcv-2.1.0-cp311-cp311-linux_*.whl" | head -n1 || true)"
[[ -n "$MMCV_WHEEL" ]] || { echo "no mmcv 2.1.0 wheel in $WHEELHOUSE" >&2; exit 2; }

"${PYTHON:-python3}" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install "pip>=24" "setuptools>=77,<82" wheel
"${PIP[@]}" install torch==2.4.1 numpy==1.26.4
"${PIP[@]}" install --no-deps "$MMCV_WHEEL"
"${PIP[@]}" install torch==2.4.1 numpy==1.26.4 mmengine==0.10.7 mmdet==3.3.0 \
    mmsegmentation==1.2.2 opencv-python==4.11.0.86 addict yapf ftfy regex pytest pytest-timeout
"${PIP[@]}" install --no-build-isolation --no-deps -e "$ROOT"

cd "$ROOT"
OMP_NUM_THREADS=1 RMT_MM_REQUIRE_FIXTURES=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_rmt_model.py tests/test_rmt_parity.py tests/test_masa.py tests/test_checkpoint.py \
    tests/test_rest.py tests/test_rest_checkpoint.py tests/test_stacks.py "$@"
