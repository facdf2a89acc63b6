#!/usr/bin/env bash
# The deployed models through the mmdeploy SDK alone: creates (or reuses) .venv-sdk with only
# scripts/stacks/sdk.txt (mmdeploy-runtime, numpy, OpenCV), then runs tests/test_sdk.py on the
# 2024 stack, which exports with mmdeploy and runs the SDK in .venv-sdk. Needs
# .venv-openmmlab (make env STACK=openmmlab).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SDK_VENV="${RMT_MM_SDK_VENV:-$ROOT/.venv-sdk}"
PINS="$ROOT/scripts/stacks/sdk.txt"
STAMP="$SDK_VENV/.pins"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$(sha256sum "$PINS" | cut -c1-16)" ]]; then
    [[ -x "$SDK_VENV/bin/python" ]] || "${PYTHON:-python3}" -m venv "$SDK_VENV"
    "$SDK_VENV/bin/python" -m pip --disable-pip-version-check -q install -r "$PINS"
    sha256sum "$PINS" | cut -c1-16 > "$STAMP"
fi
cd "$ROOT"
RMT_MM_SDK_PYTHON="$SDK_VENV/bin/python" RMT_MM_REQUIRE_SDK=1 \
    "${RMT_MM_VENV:-$ROOT/.venv-openmmlab}/bin/python" -m pytest -q tests/test_sdk.py "$@"
