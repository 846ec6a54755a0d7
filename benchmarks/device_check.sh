#!/usr/bin/env bash
# The GPU checks of one device session, as one prepared script (see docs/performance.md).
#   bash benchmarks/device_check.sh            # on the GPU machine: results under ${OUT:-device-results}
#   SMOKE=1 bash benchmarks/device_check.sh    # CPU rehearsal with tiny sizes (run this first)
# Steps, each logged as JSON lines and timed: (1) throughput, typical loop vs pudlab's trainers;
# (2) fp32 vs bf16 precision study; (3) determinism rerun + its cost, torch.compile equivalence;
# (4) a timed part of the paper preset (exp3 on mnist-5k at full widths), from which the full
# preset's wall time is projected by job count x epochs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device-results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
# pudlab from the working tree; extra wheels (mlxtend, platformdirs) carried in .whl when missing there
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && \
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
if [ -n "${SMOKE:-}" ]; then
  DEVICE=cpu; TP="--device cpu --quick --datasets mnist --ks 2 --seconds 2"
  PS="--device cpu --experiments exp4 --epochs 1 --sigmas 0,1"
  DC="--device cpu --members 2 --steps 3 --skip-compile"; PP="--epochs 1 --widths 8,16,32 --max-train-size 600"
else
  DEVICE=cuda; TP="--device cuda"; PS="--device cuda --epochs 20 --widths 32,64,128"
  DC="--device cuda --members 32 --steps 200 --widths 32,64,128 --batch 128"; PP="--epochs 30"
fi
step() {  # name, command...
  local name=$1; shift
  local start=$(date +%s.%N)
  "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(echo "$(date +%s.%N) - $start" | bc)}" | tee -a "$OUT/steps.jsonl"
  tail -n 25 "$OUT/$name.log"
}
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee "$OUT/env.txt"
step throughput $PY benchmarks/throughput.py $TP
step precision $PY benchmarks/precision_study.py $PS --store "$OUT/precision-store"
step determinism_compile $PY benchmarks/determinism_compile.py $DC
step paper_part $PY -m pudlab.cli reproduce --preset paper --datasets mnist-5k --experiments exp3 --device $DEVICE \
  $PP --no-figures --no-progress --store "$OUT/paper-part"
exit 0
