#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the pinned OpenMMLab stack.
#
# mmcv 2.1.0 has no binary wheel on PyPI, so it is built from its sdist once and the wheel is
# cached outside the repo (keyed by torch and Python versions) for every later install.
#
# Environment:
#   RMT_MM_VENV        venv location (default: <repo>/.venv)
#   RMT_MM_WHEELHOUSE  extra directory searched for a prebuilt mmcv wheel
#                      (default: ../shared/wheels when it exists)
#   RMT_MM_CACHE       where the built mmcv wheel is cached (default: ~/.cache/rmt_mm)
#   PYTHON             interpreter used to create the venv (default: python3)
set -euo pipefail

TORCH_VERSION=2.13.0
MMCV_VERSION=2.1.0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RMT_MM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
CACHE_ROOT="${RMT_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rmt_mm}"
STAMP="$VENV/.rmt_mm_installed"

log() { printf '[setup_env] %s\n' "$*" >&2; }

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtual environment at $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)

# Fast path: nothing changed since the last successful install.
REQ_HASH="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup_env.sh" | sha256sum | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$REQ_HASH" ]]; then
    exit 0
fi

# setuptools<82: mmcv's setup.py and mmengine's `mmdet::` config inheritance need pkg_resources.
"${PIP[@]}" install --upgrade "pip>=24" "setuptools<82" wheel
# torch first and pinned: an unpinned resolve would pull the multi-GB CUDA build.
"${PIP[@]}" install "torch==$TORCH_VERSION"

PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
MMCV_CACHE="$CACHE_ROOT/wheels/torch-$TORCH_VERSION-$PY_TAG"
mkdir -p "$MMCV_CACHE"

WHEELHOUSE="${RMT_MM_WHEELHOUSE:-}"
if [[ -z "$WHEELHOUSE" && -d "$ROOT/../shared/wheels" ]]; then
    WHEELHOUSE="$ROOT/../shared/wheels"
fi

find_mmcv_wheel() {
    local dir
    for dir in "$@"; do
        [[ -n "$dir" && -d "$dir" ]] || continue
        compgen -G "$dir/mmcv-$MMCV_VERSION-$PY_TAG-$PY_TAG-linux_*.whl" | head -n1 && return 0
    done
    return 1
}

build_mmcv_wheel() {
    # Build from the sdist with compiled ops. torch>=2.10 headers require C++20, while mmcv's
    # setup.py hard-codes -std=c++17, so the flag is rewritten before building.
    local work
    work="$(mktemp -d)"
    log "building mmcv $MMCV_VERSION from source (about 30 min on 2 cores); cached in $MMCV_CACHE"
    # --no-build-isolation: even fetching runs setup.py, which needs pkg_resources (setuptools<82).
    "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$work"
    tar -xzf "$work"/mmcv-"$MMCV_VERSION".tar.gz -C "$work"
    sed -i 's/-std=c++17/-std=c++20/g' "$work/mmcv-$MMCV_VERSION/setup.py"
    "${PIP[@]}" install ninja
    (cd "$work/mmcv-$MMCV_VERSION" &&
        MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "$PY" -m pip wheel --no-build-isolation --no-deps -w "$work/dist" .)
    # Debug sections make the extension ~80 MB; strip them so the cached wheel stays ~2 MB.
    local whl
    whl="$(ls "$work"/dist/mmcv-*.whl)"
    "${PIP[@]}" install wheel
    "$PY" -m wheel unpack "$whl" -d "$work/unpacked"
    find "$work/unpacked" -name '*.so' -exec strip --strip-debug {} +
    mkdir -p "$work/stripped"
    "$PY" -m wheel pack "$work/unpacked/mmcv-$MMCV_VERSION" -d "$work/stripped"
    whl="$(ls "$work"/stripped/mmcv-*.whl)"
    cp "$whl" "$MMCV_CACHE/"
    rm -rf "$work"
}

MMCV_WHEEL="$(find_mmcv_wheel "$WHEELHOUSE" "$MMCV_CACHE" || true)"
if [[ -z "$MMCV_WHEEL" ]]; then
    build_mmcv_wheel
    MMCV_WHEEL="$(find_mmcv_wheel "$MMCV_CACHE")"
fi
log "using $MMCV_WHEEL"
"${PIP[@]}" install --no-deps "$MMCV_WHEEL"
# mmcv's own runtime requirements (installed separately because of --no-deps above).
"${PIP[@]}" install addict packaging Pillow pyyaml yapf "opencv-python-headless<4.11" "numpy<2"

"${PIP[@]}" install -e "$ROOT[all]"
echo "$REQ_HASH" > "$STAMP"
log "environment ready: $VENV"
