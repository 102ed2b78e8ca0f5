#!/usr/bin/env bash
# The checks that need a GPU, in one go (a few minutes on one H100/H200 class card):
#   1. the worker's CUDA path: `pytest -m gpu` (a job on CUDA, a real out-of-memory halving its chunk);
#   2. the engine benchmark's CUDA figures (floor / reference / engine, fp32 and bf16, host syncs per step);
#   3. the full `reproduce` (not --quick) on the GPU.
# Results land in $OUT (default var/gpu-check): pytest.log, engine_cuda.json, reproduce_full.json/.log.
# Needs the project's Python packages and Fashion-MNIST (FASHION_MNIST_DIR, default Debian's folder).
set -u
OUT=${OUT:-var/gpu-check}
PY=${PYTHON:-python3}
DATA=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi -L || { echo "No NVIDIA GPU visible: nothing to check here." >&2; exit 1; }

timeout "${PYTEST_TIMEOUT:-240}" "$PY" -m pytest -m gpu tests/iri_worker -p no:cacheprovider -q 2>&1 | tee "$OUT/pytest.log"
timeout "${BENCH_TIMEOUT:-240}" "$PY" bench/engine.py --json --cuda-only > "$OUT/engine_cuda.json" 2> "$OUT/engine_cuda.log"
echo "engine bench exit $?"; cat "$OUT/engine_cuda.json"
timeout "${REPRODUCE_TIMEOUT:-420}" "$PY" manage.py reproduce --device cuda --data-dir "$DATA" --cache "${TMPDIR:-/tmp}/reproduce" \
    > "$OUT/reproduce_full.json" 2> "$OUT/reproduce_full.log"
echo "reproduce exit $?"; tail -5 "$OUT/reproduce_full.log"; cat "$OUT/reproduce_full.json"
