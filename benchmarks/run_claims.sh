#!/usr/bin/env bash
# Every long measurement behind benchmarks/RESULTS.md, one after another (hours on 2 cores).
# Each command resumes where it stopped when run again; results land in benchmarks/results/.
# Run from the repository root with the venv active (or PATH=.venv/bin:$PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
step() { echo "== $(date +%H:%M:%S) $*" >&2; }

step "1-3: Fashion-MNIST, mlp"
nosync compare --strategies single,nosync,nosync-pso,nosync-none,ddp,localsgd,easgd \
    --workers 2,4,8 --seeds 3 --dataset fashion-mnist --model mlp --epochs 3 --threads 1 \
    --evals 30 --quiet --out $R/fmnist-mlp > /dev/null

step "1-3: digits"
# pso and easgd are compared on Fashion-MNIST only (time budget).
nosync compare --strategies single,nosync,nosync-none,ddp,localsgd \
    --workers 2,4,8 --seeds 3 --dataset digits --epochs 10 --evals 40 --threads 1 \
    --quiet --out $R/digits > /dev/null

step "1: wall time for N <= 2 (run alone: the machine should be otherwise idle)"
nosync compare --strategies single,nosync,ddp,localsgd --workers 2 --seeds 3 \
    --dataset fashion-mnist --model mlp --epochs 3 --threads 1 --evals 30 --quiet \
    --out $R/walltime-n2 > /dev/null

step "4: overfitting on a 5,000-example subset"
nosync compare --strategies single,nosync,nosync-none,localsgd --workers 4 --seeds 3 \
    --dataset fashion-mnist --train-subset 5000 --epochs 60 --evals 30 --threads 1 \
    --quiet --out $R/overfit > /dev/null

step "1-3: Fashion-MNIST, cnn"
# The cnn trains at ~1.2-1.4k samples/s on one core: 4 workers, no ddp, to fit in the time we had.
nosync compare --strategies single,nosync,localsgd --workers 4 --seeds 3 \
    --dataset fashion-mnist --model cnn --epochs 1 --threads 1 --evals 10 --quiet \
    --out $R/fmnist-cnn > /dev/null

step "swarms of many (simulated)"
python benchmarks/simulate_scaling.py --particles 1,2,4,8,16,32,64 --topologies all,ring \
    --seeds 3 --target 0.95 > /dev/null

step "compressed exchange"
python benchmarks/compression.py --seeds 3 --workers 4 --epochs 3 > /dev/null
step "10: rules against averaging - the small grid (N = 4, 2 seeds)"
# No --quiet here: this grid ran without it, and compare refuses a folder whose saved settings
# (compare.json) differ from the command's.
nosync compare --strategies 'localsgd:period=10' localsgd 'localsgd:period=50' \
    diloco 'diloco:period=10' 'diloco:period=50' nosync \
    'nosync-weighted:temperature=0.01,pressure=1.0,period=10' \
    'nosync-weighted:temperature=0.1,pressure=1.0,period=10' \
    'nosync-weighted:temperature=0.01,pressure=0.5,period=10' \
    'nosync-weighted:temperature=0.1,pressure=0.5,period=10' \
    'nosync-weighted:temperature=0.1,pressure=1.0,outer_momentum=0.9,outer_lr=0.7' \
    'nosync-elastic:pressure=1.0,outer_momentum=0.9,outer_lr=0.7' \
    'nosync-elastic:pressure=0.03,period=10,diversity=true' \
    --workers 4 --seeds 2 --dataset fashion-mnist --model mlp --epochs 3 --threads 1 \
    --evals 30 --target 0.8702 --out $R/rules-sweep > /dev/null
nosync compare --strategies 'diloco:outer_lr=0.7,outer_momentum=0.5' \
    'diloco:outer_lr=1.0,outer_momentum=0.5' 'diloco:outer_lr=0.5,outer_momentum=0.9,period=50' \
    --workers 4 --seeds 2 --dataset fashion-mnist --model mlp --epochs 3 --threads 1 \
    --evals 30 --target 0.8702 --quiet --out $R/rules-sweep-diloco > /dev/null
nosync compare --strategies 'localsgd:period=10' 'diloco:outer_lr=0.7,outer_momentum=0.5' \
    'nosync-weighted:temperature=0.1,pressure=1.0,period=10' --workers 8 --seeds 2 \
    --dataset fashion-mnist --model mlp --epochs 3 --threads 1 --evals 30 --target 0.8702 \
    --quiet --out $R/rules-n8 > /dev/null
step "10: the claims grid (3 seeds), data-parallel particles, overfitting, cnn"
W='nosync-weighted:temperature=0.1,pressure=1.0,period=10'
nosync compare --strategies single 'localsgd:period=10' 'diloco:outer_lr=0.7,outer_momentum=0.5' \
    easgd nosync "$W" --workers 2,4,8 --seeds 3 --dataset fashion-mnist --model mlp --epochs 3 \
    --threads 1 --evals 30 --target 0.8702 --quiet --out $R/claims-mlp > /dev/null
nosync compare --strategies "$W" "$W,ranks_per_particle=2" ddp 'localsgd:period=10' \
    --workers 4 --seeds 3 --dataset fashion-mnist --model mlp --epochs 3 --threads 1 \
    --evals 30 --target 0.8702 --quiet --out $R/claims-dp > /dev/null
nosync compare --strategies single 'localsgd:period=10' nosync "$W" \
    'nosync-elastic:pressure=0.03,period=10,diversity=true' --workers 4 --seeds 3 \
    --dataset fashion-mnist --train-subset 5000 --epochs 60 --evals 30 --threads 1 \
    --quiet --out $R/claims-overfit > /dev/null
nosync compare --strategies single 'localsgd:period=10' 'diloco:outer_lr=0.7,outer_momentum=0.5' \
    nosync "$W" --workers 4 --seeds 3 --dataset fashion-mnist --model cnn --epochs 1 \
    --threads 1 --evals 10 --quiet --out $R/claims-cnn > /dev/null

step "9 and 10: walltime-n2 with the rules (run alone: the machine should be otherwise idle)"
python benchmarks/stragglers.py --plan rules --seeds 0 1 2 > /dev/null
step done
