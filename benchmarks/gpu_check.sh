#!/usr/bin/env bash
# The GPU check: install, `pytest -m gpu`, then benchmarks/gpu_bench.py; <= 8 minutes on a
# machine with one GPU and no internet.  Run from anywhere:
#
#     benchmarks/gpu_check.sh                         # results in $OUT, else benchmarks/results/gpu
#     GPU_CHECK_ALLOW_CPU=1 benchmarks/gpu_check.sh   # the same steps on the CPU, quick (dry path)
#
# Needs torch (with CUDA), numpy, scikit-learn, tqdm, matplotlib and pytest on the machine; the
# rest (tomli-w, safetensors, pytest-timeout, setuptools wheels) and Fashion-MNIST's four .gz files come in
# benchmarks/gpu_carry/ (fill it with benchmarks/gpu_carry.sh; GPU_CARRY=DIR to use another).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CARRY=${GPU_CARRY:-benchmarks/gpu_carry}
RESULTS=${OUT:-benchmarks/results/gpu}
mkdir -p "$RESULTS"
start=$(date +%s)
log() { echo "gpu_check [$(( $(date +%s) - start )) s]: $*"; }

if [ -d "$CARRY/wheels" ]; then
    log "installing the carried wheels"
    "$PY" -m pip install -q --no-index --find-links "$CARRY/wheels" \
        tomli-w safetensors pytest-timeout "setuptools>=77"
fi
log "installing nosync (no dependencies, no build isolation)"
"$PY" -m pip install -q --no-deps --no-build-isolation -e .
if [ -d "$CARRY/fashion-mnist" ]; then
    export NOSYNC_DATA="$PWD/$CARRY"  # data.py looks in $NOSYNC_DATA/fashion-mnist
fi

if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    device=cuda quick=""
    "$PY" -c 'import torch; print("gpu_check:", torch.__version__, torch.cuda.get_device_name(0))'
elif [ "${GPU_CHECK_ALLOW_CPU:-0}" = 1 ]; then
    device=cpu quick="--quick"
    log "no CUDA: the dry path on the CPU (GPU_CHECK_ALLOW_CPU=1); GPU tests will skip"
else
    echo "gpu_check: no CUDA here (set GPU_CHECK_ALLOW_CPU=1 for the CPU dry path)" >&2
    exit 2
fi

log "pytest -m gpu"
status=0
"$PY" -m pytest -m gpu -q -p no:cacheprovider tests/e2e/test_gpu.py 2>&1 | tee "$RESULTS/pytest_gpu.txt" \
    || status=1
log "benchmark on $device"
"$PY" benchmarks/gpu_bench.py --out "$RESULTS" --device "$device" $quick || status=1
log "done (status $status); results in $RESULTS"
exit $status
