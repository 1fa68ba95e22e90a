#!/usr/bin/env bash
# GPU readiness, one table, under 8 minutes on one GPU (see benchmarks/gpu_check.py):
# the paper's network (ResNet-50, 508/508) on an 8192 x 8192 scene in fp32, fp16 and bf16
# (end-to-end and bare-forward Mpx/s, peak GPU memory, agreement with fp32), the engine
# ceiling with a free stand-in network, and torchrun smoke runs of train and batch segment.
#
#   benchmarks/gpu_check.sh          # on a CUDA machine
#   benchmarks/gpu_check.sh --dry    # a 1024 x 1024 scene, a tiny network, on the CPU:
#                                    # proves the script runs; its numbers mean nothing
#
# Needs no internet. glnet runs from this checkout (PYTHONPATH); rasterio and its small
# dependencies must be there already, or be wheels in
# .whl/ (for a machine without them, fetch on one with internet, e.g. for Python 3.12:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     rasterio affine cligj click-plugins
# ). Override with GLNET_GPU_CHECK_SIZE, GLNET_GPU_CHECK_DEVICE, GLNET_GPU_CHECK_CONFIG,
# GLNET_GPU_CHECK_DIR (kept when given).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [[ "${1:-}" == "--dry" ]]; then
  export GLNET_GPU_CHECK_SIZE=${GLNET_GPU_CHECK_SIZE:-1024}
  export GLNET_GPU_CHECK_DEVICE=${GLNET_GPU_CHECK_DEVICE:-cpu}
  export GLNET_GPU_CHECK_CONFIG=${GLNET_GPU_CHECK_CONFIG:-tiny}
fi
export PYTHONUNBUFFERED=1

if ! "$python" -c "import rasterio" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --upgrade --target /tmp/glnet-site .whl/*.whl
    export PYTHONPATH=/tmp/glnet-site${PYTHONPATH:+:$PYTHONPATH}
  fi
  "$python" -c "import rasterio" || {
    echo "gpu_check: rasterio is not importable and .whl/ holds no wheels for it (see the" \
         "header of $0)" >&2; exit 1; }
fi
# The check runs as a script from benchmarks/, where the checkout is not on sys.path,
# so name it explicitly rather than relying on an installed copy.
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
exec "$python" benchmarks/gpu_check.py
