#!/usr/bin/env bash
# Everything worth doing on a lent GPU machine, in one bounded call (no network there: the
# image's python3 has torch; open_clip and its two small deps travel as wheels in .whl/).
#   OUT=dir DEADLINE_S=560 bash scripts/gpu_check.sh
# 1. nada info: builds the CUDA ops and runs their self-check; 2. the CUDA op tests;
# 3. CUDA-vs-reference op timings and `nada train` timings on the GPU;
# 4. the rest of the time: shapes-generator training runs TRAIN_A / TRAIN_B (their arguments), both
#    resumed from TRAIN_STATE if set; exports land in $OUT.
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/gpu_check}; DEADLINE_S=${DEADLINE_S:-560}; DEV=${DEV:-cuda}
mkdir -p "$OUT" /tmp/runs
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TORCH_EXTENSIONS_DIR=/tmp/torch_ext
left() { echo $(( DEADLINE_S - ($(date +%s) - T0) )); }
step() { echo; echo "=== $1 (t=$(( $(date +%s) - T0 ))s)"; }

if [ -z "${SKIP_CHECKS:-}" ]; then
step "gpu"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
step "nada info (builds the CUDA ops, self-check)"; timeout 240 python3 -m nada info --selfcheck
step "CUDA op tests"; timeout 120 python3 -m pytest -q -p no:cacheprovider -m "slow or not slow" tests/test_ops_cuda.py
step "bench_ops (CUDA vs reference)"; timeout 40 python3 scripts/bench_ops.py --cuda-only --repeats 20
step "bench_train shapes"; timeout 60 python3 scripts/bench_train.py shapes --iters 50 --device cuda
step "bench_train fullsize 256"; timeout 60 python3 scripts/bench_train.py fullsize --iters 3 --device cuda
step "bench_train search"; timeout 45 python3 scripts/bench_train.py search --res 256 --repeats 1 --device cuda
fi

if [ -n "${TRAIN_A:-}${TRAIN_B:-}" ]; then
  mins=$(python3 -c "print(max(0.5, ($(left) - 45) / 60))")
  step "shapes generator training for $mins min"
  for tag in A B; do
    var=TRAIN_$tag; a=${!var:-}
    [ -z "$a" ] && continue
    mkdir -p /tmp/runs/$tag
    [ -n "${TRAIN_STATE:-}" ] && cp "$TRAIN_STATE" /tmp/runs/$tag/state.pt  # resume both from one state
    python3 scripts/train_shapes_generator.py $a --device "$DEV" --workers 7 --threads 1 --ckpt-every-min 1000 \
      --time-limit-min "$mins" --run-dir /tmp/runs/$tag --out "$OUT/${tag}_g.safetensors" > /tmp/runs/${tag}_train.log 2>&1 &
  done
  wait
  for tag in A B; do
    [ -f /tmp/runs/$tag/samples.png ] && cp /tmp/runs/$tag/samples.png "$OUT/${tag}_samples.png"
    [ -f /tmp/runs/$tag/state.pt ] && cp /tmp/runs/$tag/state.pt "$OUT/${tag}_state.pt"
    [ -f /tmp/runs/${tag}_train.log ] && tr "\r" "\n" < /tmp/runs/${tag}_train.log | grep -v '^$' | tail -4
  done
fi
step "done"
