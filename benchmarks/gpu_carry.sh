#!/usr/bin/env bash
# Fill benchmarks/gpu_carry/ (git-ignored) with what benchmarks/gpu_check.sh needs on a GPU
# machine without internet: the wheels of nosync's dependencies that a torch + numpy +
# scikit-learn + tqdm + matplotlib + pytest machine lacks, and Fashion-MNIST's four .gz files
# (from /usr/share/datasets/fashion-mnist, or FMNIST=DIR).  About 31 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CARRY=${GPU_CARRY:-benchmarks/gpu_carry}
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
mkdir -p "$CARRY/wheels" "$CARRY/fashion-mnist"
# safetensors' wheel is abi3 (any CPython >= 3.8); the others are pure Python
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$CARRY/wheels" \
    tomli-w safetensors pytest-timeout "setuptools>=77"
cp "$FMNIST"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$CARRY/fashion-mnist/"
du -sh "$CARRY"
