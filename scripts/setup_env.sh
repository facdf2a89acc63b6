#!/usr/bin/env bash
# Create (or reuse) a virtual environment with one pinned, tested stack and rmt_mm.
#
# Stacks (pins in scripts/stacks/<STACK>.txt; docs/install.md says why each is pinned):
#   onedl      (default) the maintained OneDL fork on torch 2.13 CPU: onedl-mmcv 2.3.6,
#              onedl-mmengine 0.10.12, onedl-mmdetection 3.5.1, onedl-mmsegmentation 1.4.2
#   openmmlab  the 2024 OpenMMLab stack as its users run it: torch 2.1.2, mmcv 2.1.0,
#              mmengine 0.10.7, mmdet 3.3.0, mmseg 1.2.2, numpy 1.26
#
# Neither mmcv has a binary wheel on PyPI. A prebuilt one is taken from the wheelhouse
# (../shared/wheels and its torch-<version>/ folder) or the cache when it imports against the
# stack's torch; otherwise it is built from its sdist once, with compiled ops, and cached
# outside the repo, keyed by torch and Python versions and the build recipe.
#
# Environment:
#   STACK              onedl (default) or openmmlab
#   RMT_MM_VENV        venv location (default: <repo>/.venv, <repo>/.venv-openmmlab)
#   RMT_MM_WHEELHOUSE  directory searched for a prebuilt mmcv wheel (default: ../shared/wheels;
#                      empty: none, build from source as on a fresh clone)
#   RMT_MM_CACHE       where a built mmcv wheel is cached, keyed by torch, Python and the build
#                      recipe (default: ~/.cache/rmt_mm)
#   PYTHON             interpreter used to create the venv (default: python3)
set -euo pipefail

STACK="${STACK:-onedl}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PINS="$ROOT/scripts/stacks/$STACK.txt"
log() { printf '[setup_env] %s\n' "$*" >&2; }

case "$STACK" in
    onedl) MMCV_DIST=onedl-mmcv DEFAULT_VENV="$ROOT/.venv" ;;
    openmmlab) MMCV_DIST=mmcv DEFAULT_VENV="$ROOT/.venv-openmmlab" ;;
    *) log "unknown STACK=$STACK (expected onedl or openmmlab)"; exit 2 ;;
esac
# Absolute: the source build below runs pip from inside the unpacked sdist.
VENV="$(realpath -m "${RMT_MM_VENV:-$DEFAULT_VENV}")"
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
REQ_HASH="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup_env.sh" "$PINS" |
    sha256sum | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$REQ_HASH" ]]; then
    exit 0
fi

# The venv's own setuptools stays (users' 2024 environments have one with pkg_resources).
"${PIP[@]}" install --upgrade "pip>=24" wheel
# torch first and pinned: an unpinned resolve would pull the newest multi-GB CUDA build.
"${PIP[@]}" install "torch==$TORCH_VERSION"

PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_NAME="${MMCV_DIST//-/_}-$MMCV_VERSION-$PY_TAG-$PY_TAG-linux_*.whl"
# Set but empty: no wheelhouse, as on a machine with only a clone of the repository.
WHEELHOUSE="${RMT_MM_WHEELHOUSE-$ROOT/../shared/wheels}"

# Loads mmcv's compiled ops alone (importing mmcv would need mmengine, installed later).
LOADS_EXT='
import glob, importlib.util as util, os, torch
package = os.path.dirname(util.find_spec("mmcv").origin)
spec = util.spec_from_file_location("mmcv._ext", glob.glob(os.path.join(package, "_ext*.so"))[0])
spec.loader.exec_module(util.module_from_spec(spec))'

install_mmcv_wheel() {
    # Install the first wheel whose compiled ops load against this torch (a wheel built for
    # another torch fails with undefined symbols); fail if none does.
    local dir whl
    local dirs=("$MMCV_CACHE")
    [[ -n "$WHEELHOUSE" ]] && dirs=("$WHEELHOUSE/torch-$TORCH_VERSION" "$MMCV_CACHE" "$WHEELHOUSE")
    for dir in "${dirs[@]}"; do
        for whl in $(compgen -G "$dir/$WHEEL_NAME" || true); do
            "${PIP[@]}" install --no-deps --force-reinstall "$whl"
            if "$PY" -c "$LOADS_EXT" 2>/dev/null; then
                log "using $whl"
                return 0
            fi
            log "skipping $whl: built against another torch"
        done
    done
    return 1
}

build_mmcv_wheel() {
    # Build from the sdist with compiled ops (pkg_resources, i.e. setuptools < 82, is needed by
    # its setup.py). torch >= 2.10's headers require C++20, while the sdists' setup.py
    # hard-code -std=c++14/-std=c++17, so the flags are raised for those.
    local work src whl
    work="$(mktemp -d)"
    log "building $MMCV_DIST $MMCV_VERSION from source (once; about 10 min on 2 cores); cached in $MMCV_CACHE"
    "${PIP[@]}" install "setuptools<82" ninja
    "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation \
        "$MMCV_DIST==$MMCV_VERSION" -d "$work"
    tar -xzf "$work"/*.tar.gz -C "$work"
    src="$(find "$work" -mindepth 2 -maxdepth 2 -name setup.py -printf '%h\n' | head -n1)"
    if "$PY" -c 'import sys, torch; sys.exit(torch.__version__ < (2, 10))'; then
        sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
    fi
    (cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "$PY" -m pip wheel --no-build-isolation --no-deps -w "$work/dist" .)
    # Debug sections make the extension 30-80 MB; stripped, the cached wheel is ~2 MB.
    whl="$(ls "$work"/dist/*.whl)"
    "$PY" -m wheel unpack "$whl" -d "$work/unpacked"
    find "$work/unpacked" -name '*.so' -exec strip --strip-debug {} +
    mkdir -p "$work/stripped"
    "$PY" -m wheel pack "$work"/unpacked/* -d "$work/stripped"
    cp "$work"/stripped/*.whl "$MMCV_CACHE/"
    rm -rf "$work"
}

# The cache is keyed by the build recipe as well, so a changed recipe builds (and is tested) anew.
RECIPE="$(declare -f build_mmcv_wheel | sha256sum | cut -c1-12)"
MMCV_CACHE="$CACHE_ROOT/wheels/torch-$TORCH_VERSION-$PY_TAG-$RECIPE"
mkdir -p "$MMCV_CACHE"

if ! install_mmcv_wheel; then
    build_mmcv_wheel
    install_mmcv_wheel || { log "the $MMCV_DIST wheel built here does not import"; exit 1; }
fi
# The rest of the stack at its pins (mmcv and torch are already satisfied).
"${PIP[@]}" install -r "$PINS"
# rmt_mm itself (with the venv's setuptools: nothing of the stack changes).
"${PIP[@]}" install --no-build-isolation --no-deps -e "$ROOT"
echo "$REQ_HASH" > "$STAMP"
log "environment ready: $VENV ($STACK stack)"
