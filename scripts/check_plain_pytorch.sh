#!/usr/bin/env bash
# The backbones in a plain PyTorch project at the declared floors: Python 3.9, torch 2.1,
# numpy 1.24, and no mmengine, mmcv, mmdet or mmseg. Installs rmt_mm as a user would (pip
# resolves its dependencies against the pre-installed torch and numpy and must add nothing),
# then runs the tests of what works without OpenMMLab (tests/test_plain.py says which).
#
# Environment: PLAIN_VENV (default: a new temporary directory), PYTHON (default: python3.9 on
# PATH or under pyenv's root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PLAIN_VENV:-$(mktemp -d)/venv}"
PYTHON="${PYTHON:-$(command -v python3.9 || ls "$(pyenv root 2>/dev/null || echo ~/.pyenv)"/versions/3.9*/bin/python 2>/dev/null | head -n1 || true)}"
[[ -x "$PYTHON" ]] || { echo "check_plain_pytorch: no Python 3.9 interpreter found (set PYTHON)" >&2; exit 2; }

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade "pip>=24"
"${PIP[@]}" install torch==2.1.2 numpy==1.24.4 pytest==8.3.5 pytest-timeout==2.4.0
"${PIP[@]}" install --dry-run --report "$VENV/report.json" "$ROOT"
"$VENV/bin/python" - "$VENV/report.json" <<'PY'
import json, sys
planned = sorted(i['metadata']['name'] for i in json.load(open(sys.argv[1]))['install'])
assert planned == ['rmt_mm'], f'pip would also install {planned}'
PY
"${PIP[@]}" install "$ROOT"

cd "$ROOT"
OMP_NUM_THREADS=1 RMT_MM_PLAIN=1 RMT_MM_REQUIRE_FIXTURES=1 "$VENV/bin/python" -m pytest -q \
    -p no:cacheprovider tests/test_plain.py tests/test_rmt_model.py tests/test_rmt_parity.py \
    tests/test_masa.py tests/test_rest.py tests/test_depthwise.py "$@"
