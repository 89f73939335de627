#!/usr/bin/env bash
# The paper scale, costed from measurements (issue 17): one short run on a GPU machine.
#
#   bash bench/gpu.sh            # after `make setup`; writes bench/out/gpu/*.json and summary.txt
#
# Measures, in one go (about 5 minutes on a modern GPU):
#   1. the paper model's training rate: bench/train.py --paper-only, batch 32 (the paper's), on cuda,
#      in fp32 and in bf16 (autocast mixed precision); GPU-hours of the paper's 200,000 steps of batch 32;
#   2. its sampling rate: bench/sample.py --paper-cost, 64 rows per evaluation, on cuda; GPU-hours of
#      sampling the paper's whole test split (50 samples each) with Euler-Maruyama at 1000 steps and
#      with the stochastic EDM sampler at 49 steps (99 evaluations);
#   3. samples per second per sampler: bench/sample.py --paper (the paper's untrained network, every
#      sampler at its step counts, 64 rows per batch);
#   4. the SPH projection on all the machine's cores: bench/projection.py at 1e6 and 4e6 particles
#      (every backend and swiftsimio, all threads and one; no `exact` oracle: too slow there), which
#      needs the bench extra (swiftsimio): `make bench` or `.venv/bin/pip install -e ".[bench]"`.
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
    for PRECISION in fp32 bf16; do
        "$PY" bench/train.py --paper-only --device "$DEVICE" --paper-batch "$TRAIN_BATCH" \
            --paper-steps "$TRAIN_STEPS" --precision "$PRECISION" --threads "$THREADS" --out "$OUT/train_$PRECISION.json"
    done
    "$PY" bench/sample.py --paper-cost --device "$DEVICE" --batch "$SAMPLE_BATCH" --cost-evals "$EVALS" \
        --threads "$THREADS" --out "$OUT/sample.json"
    if [[ "$DEVICE" == cuda* ]]; then
        "$PY" bench/sample.py --paper --device "$DEVICE" --batch "$SAMPLE_BATCH" --threads "$THREADS" \
            --out "$OUT/samplers.json"
    else
        "$PY" bench/sample.py --device "$DEVICE" --threads "$THREADS" --out "$OUT/samplers.json"
    fi
    "$PY" bench/projection.py --sizes 1e6,4e6 --skip-exact-above 0 --threads "$THREADS" --out "$OUT/projection.json"
} 2>&1 | tee "$OUT/summary.txt"
