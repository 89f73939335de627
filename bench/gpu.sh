#!/usr/bin/env bash
# The paper scale, costed from measurements (issue 17): one short run on a GPU machine.
#
#   bash bench/gpu.sh            # after `make setup`; writes bench/out/gpu/*.json and summary.txt
#
# Measures, in one go (about 3 minutes on a modern GPU):
#   1. the paper model's training rate: bench/train.py --paper-only, batch 32 (the paper's), on cuda;
#      GPU-hours of the paper's 200,000 steps of batch 32;
#   2. its sampling rate: bench/sample.py --paper-cost, 64 rows per evaluation, on cuda; GPU-hours of
#      sampling the paper's whole test split (50 samples each) with Euler-Maruyama at 1000 steps and
#      with the stochastic EDM sampler at 49 steps (99 evaluations).
# Without a GPU (no nvidia-smi, or CMPIPE_BENCH_DEVICE=cpu) it measures the same on the CPU, with
# smaller batches extrapolated, and says so in every line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
if [[ -z "${CMPIPE_BENCH_DEVICE:-}" ]] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    DEVICE=cuda TRAIN_BATCH=32 TRAIN_STEPS=20 SAMPLE_BATCH=64 EVALS=20
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/device.txt"
else
    DEVICE=${CMPIPE_BENCH_DEVICE:-cpu} TRAIN_BATCH=1 TRAIN_STEPS=2 SAMPLE_BATCH=2 EVALS=3
    echo "no GPU: CPU figures ($(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2))" > "$OUT/device.txt"
fi
THREADS=${THREADS:-$(nproc)}
{
    cat "$OUT/device.txt"
    "$PY" bench/train.py --paper-only --device "$DEVICE" --paper-batch "$TRAIN_BATCH" --paper-steps "$TRAIN_STEPS" \
        --threads "$THREADS" --out "$OUT/train.json"
    "$PY" bench/sample.py --paper-cost --device "$DEVICE" --batch "$SAMPLE_BATCH" --cost-evals "$EVALS" \
        --threads "$THREADS" --out "$OUT/sample.json"
} 2>&1 | tee "$OUT/summary.txt"
