#!/usr/bin/env bash
# The backbones in a plain PyTorch project at the declared floors: Python 3.9, torch 2.1,
# numpy 1.24, and no mmengine, mmcv, mmdet or mmseg. Installs rmt_mm as a user would (pip
# resolves its dependencies against the pre-installed torch and numpy and must add nothing),
# then runs the tests of what works without OpenMMLab (tests/test_plain.py says which). The
# kernels' own tests run on torch 2.1 in the 2024 stack (make test STACK=openmmlab).
#
# Environment: PLAIN_VENV (default: a new temporary directory), PYTHON (default: python3.9 on
# PATH or under pyenv's root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${PLAIN_VENV:-}" ]]; then
    VENV="$PLAIN_VENV"
else  # torch 2.1.2's wheel pulls ~5 GB of CUDA libraries: a temporary venv goes when the check ends
    TMP_VENV_DIR="$(mktemp -d)"
    trap 'rm -rf "$TMP_VENV_DIR"' EXIT
    VENV="$TMP_VENV_DIR/venv"
fi
find_python39() {  # $PYTHON, pyenv's 3.9, or python3.9 on PATH: the first that runs as 3.9
    local candidate
    for candidate in "${PYTHON:-}" "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.9*/bin/python3.9 python3.9; do
        if [[ -n "$candidate" ]] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 9)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "check_plain_pytorch: no Python 3.9 interpreter found (set PYTHON)" >&2
    return 1
}
PYTHON="$(find_python39)"

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade "pip>=24"
"${PIP[@]}" install torch==2.1.2 numpy==1.24.4 pytest==8.3.5 pytest-timeout==2.4.0
"${PIP[@]}" install --dry-run --report "$VENV/report.json" "$ROOT"
"$VENV/bin/python" - "$VENV/report.json" <<'PY'
import json, re, sys
planned = sorted(re.sub(r'[-_.]+', '-', i['metadata']['name']).lower()
                 for i in json.load(open(sys.argv[1]))['install'])
assert planned == ['rmt-mm'], f'pip would also install {planned}'
PY
"${PIP[@]}" install "$ROOT"

cd "$ROOT"
OMP_NUM_THREADS=1 RMT_MM_PLAIN=1 RMT_MM_REQUIRE_FIXTURES=1 "$VENV/bin/python" -m pytest -q \
    -p no:cacheprovider tests/test_plain.py tests/test_backbones.py tests/test_rmt_model.py \
    tests/test_rmt_parity.py tests/test_rest.py "$@"
