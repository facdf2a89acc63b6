#!/usr/bin/env bash
# Create (or reuse) a virtual environment with one pinned, tested OpenMMLab stack and rmt_mm.
#
# Stacks (pins in scripts/stacks/<STACK>.txt, docs/install.md says why each is pinned):
#   openmmlab  (default) torch 2.13 CPU, mmcv 2.1.0, mmengine 0.10.7, mmdet 3.3.0, mmseg 1.2.2
#   onedl      the maintained fork: onedl-mmcv 2.3.6, onedl-mmengine 0.10.12,
#              onedl-mmdetection 3.5.1, onedl-mmsegmentation 1.4.2
#
# Neither mmcv has a binary wheel on PyPI, so it is built from its sdist once (with compiled
# ops) and the wheel is cached outside the repo, keyed by torch and Python versions.
#
# Environment:
#   STACK              openmmlab (default) or onedl
#   RMT_MM_VENV        venv location (default: <repo>/.venv, <repo>/.venv-onedl for onedl)
#   RMT_MM_WHEELHOUSE  extra directory searched for a prebuilt mmcv wheel
#                      (default: ../shared/wheels when it exists)
#   RMT_MM_CACHE       where a built mmcv wheel is cached (default: ~/.cache/rmt_mm)
#   PYTHON             interpreter used to create the venv (default: python3)
set -euo pipefail

STACK="${STACK:-openmmlab}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PINS="$ROOT/scripts/stacks/$STACK.txt"
log() { printf '[setup_env] %s\n' "$*" >&2; }

case "$STACK" in
    openmmlab) MMCV_DIST=mmcv DEFAULT_VENV="$ROOT/.venv" ;;
    onedl) MMCV_DIST=onedl-mmcv DEFAULT_VENV="$ROOT/.venv-onedl" ;;
    *) log "unknown STACK=$STACK (expected openmmlab or onedl)"; exit 2 ;;
esac
VENV="${RMT_MM_VENV:-$DEFAULT_VENV}"
PYTHON="${PYTHON:-python3}"
CACHE_ROOT="${RMT_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rmt_mm}"
STAMP="$VENV/.rmt_mm_installed"

pin() {  # the pinned version of distribution $1 in the stack's pin file
    local version
    version="$(sed -n "s/^$1==\([^ ;#]*\).*/\1/p" "$PINS")"
    [[ -n "$version" ]] || { log "$PINS pins no version of $1"; exit 2; }
    echo "$version"
}
TORCH_VERSION="$(pin torch)"
MMCV_VERSION="$(pin "$MMCV_DIST")"

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtual environment at $VENV ($STACK stack)"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)

# Fast path: nothing changed since the last successful install.
REQ_HASH="$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/scripts/setup_env.sh" "$PINS" |
    sha256sum | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$REQ_HASH" ]]; then
    exit 0
fi

# setuptools<82: building mmcv and rmt_mm without isolation (and mmengine 0.10.7) need it.
"${PIP[@]}" install --upgrade "pip>=24" "setuptools>=77,<82" wheel
# torch first and pinned: an unpinned resolve would pull the multi-GB CUDA build.
"${PIP[@]}" install "torch==$TORCH_VERSION"

PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
MMCV_CACHE="$CACHE_ROOT/wheels/torch-$TORCH_VERSION-$PY_TAG"
WHEEL_NAME="${MMCV_DIST//-/_}-$MMCV_VERSION-$PY_TAG-$PY_TAG-linux_*.whl"
mkdir -p "$MMCV_CACHE"

WHEELHOUSE="${RMT_MM_WHEELHOUSE:-}"
if [[ -z "$WHEELHOUSE" && -d "$ROOT/../shared/wheels" ]]; then
    WHEELHOUSE="$ROOT/../shared/wheels"
fi

find_mmcv_wheel() {
    local dir
    for dir in "$@"; do
        [[ -n "$dir" && -d "$dir" ]] || continue
        compgen -G "$dir/$WHEEL_NAME" | head -n1 && return 0
    done
    return 1
}

build_mmcv_wheel() {
    # Build from the sdist with compiled ops. torch>=2.10 headers require C++20, while the
    # sdists' setup.py hard-code -std=c++14/-std=c++17, so the flags are raised first.
    local work src whl
    work="$(mktemp -d)"
    log "building $MMCV_DIST $MMCV_VERSION from source (30-60 min on 2 cores); cached in $MMCV_CACHE"
    # --no-build-isolation: even fetching runs setup.py, which needs pkg_resources (setuptools<82).
    "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation \
        "$MMCV_DIST==$MMCV_VERSION" -d "$work"
    tar -xzf "$work"/*.tar.gz -C "$work"
    src="$(find "$work" -mindepth 2 -maxdepth 2 -name setup.py -printf '%h\n' | head -n1)"
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
    "${PIP[@]}" install ninja
    (cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "$PY" -m pip wheel --no-build-isolation --no-deps -w "$work/dist" .)
    # Debug sections make the extension 30-80 MB; stripped, the cached wheel is ~2 MB.
    whl="$(ls "$work"/dist/*.whl)"
    "$PY" -m wheel unpack "$whl" -d "$work/unpacked"
    find "$work/unpacked" -name '*.so' -exec strip --strip-debug {} +
    "$PY" -m wheel pack "$work"/unpacked/* -d "$work/stripped"
    cp "$work"/stripped/*.whl "$MMCV_CACHE/"
    rm -rf "$work"
}

MMCV_WHEEL="$(find_mmcv_wheel "$WHEELHOUSE" "$MMCV_CACHE" || true)"
if [[ -z "$MMCV_WHEEL" ]]; then
    build_mmcv_wheel
    MMCV_WHEEL="$(find_mmcv_wheel "$MMCV_CACHE")"
fi
log "using $MMCV_WHEEL"
"${PIP[@]}" install --no-deps "$MMCV_WHEEL"
# The rest of the stack at its pins (mmcv and torch are already satisfied).
"${PIP[@]}" install -r "$PINS"
# rmt_mm itself and its test tools; the stack's extra only confirms the pins agree.
"${PIP[@]}" install --no-build-isolation -e "$ROOT[$STACK,test]"
echo "$REQ_HASH" > "$STAMP"
log "environment ready: $VENV ($STACK stack)"
