#!/usr/bin/env bash
# Demo (not run in CI: the mmcv build alone takes ~15-20 min on 2 cores):
# build mmcv 2.2.0's real `_ext` against one torch, install it beside another, and let
# envdoctor name every symbol the second torch lacks (testbed.md §4c: 9 c10 symbols when a
# torch-2.13 build meets the pre-C++11-ABI torch 2.5.1 from PyPI).
#
#   bash bench/demo_mmcv_ext.sh                 # build against torch 2.13.0, run on torch 2.5.1
#   TORCH_BUILD=2.13.0 TORCH_RUN=2.14.1 bash bench/demo_mmcv_ext.sh   # loads fine: no finding expected
#
# Needs network access to the package index, gcc/g++, ~8 GB of disk (torch 2.5.1 pulls CUDA 12 wheels).
# WORK (default /tmp/envdoctor-demo-mmcv) keeps the venvs and the wheel; rerunning reuses them.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3.11}
TORCH_BUILD=${TORCH_BUILD:-2.13.0}
TORCH_RUN=${TORCH_RUN:-2.5.1}
MMCV=${MMCV:-2.2.0}
WORK=${WORK:-/tmp/envdoctor-demo-mmcv}
mkdir -p "$WORK/wheels"
B="$WORK/build-torch$TORCH_BUILD"
R="$WORK/run-torch$TORCH_RUN"

if ! ls "$WORK/wheels/torch$TORCH_BUILD"/mmcv-"$MMCV"-*.whl >/dev/null 2>&1; then
  [ -x "$B/bin/python" ] || "$PY" -m venv "$B"
  "$B/bin/pip" install -q "torch==$TORCH_BUILD" "setuptools<81" wheel ninja numpy packaging
  # mmcv's setup.py needs pkg_resources (setuptools<81) and must see this torch: no build isolation;
  # --no-cache-dir: pip's wheel cache would hand back a wheel built against another torch.
  echo "building mmcv $MMCV against torch $TORCH_BUILD (15-20 min) ..."
  time MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} "$B/bin/pip" wheel -q --no-deps --no-build-isolation \
    --no-cache-dir "mmcv==$MMCV" -w "$WORK/wheels/torch$TORCH_BUILD"
fi
WHEEL=$(ls "$WORK/wheels/torch$TORCH_BUILD"/mmcv-"$MMCV"-*.whl | head -1)

[ -x "$R/bin/python" ] || "$PY" -m venv "$R"
"$R/bin/pip" install -q "torch==$TORCH_RUN"
"$R/bin/pip" install -q --no-deps --force-reinstall "$WHEEL"
EXT=$(ls "$R"/lib/python3*/site-packages/mmcv/_ext*.so)

echo "== the loader's own words (first missing symbol only):"
"$R/bin/python" -c "import torch, mmcv._ext" 2>&1 | tail -1 || true
echo "== envdoctor inspect:"
PYTHONPATH="$REPO" "$PY" -m envdoctor inspect "$EXT" --python "$R/bin/python" || true
echo "== envdoctor check (the same analysis, attached to mmcv._ext):"
PYTHONPATH="$REPO" "$PY" -m envdoctor check --python "$R/bin/python" --select ED7 || true
