#!/usr/bin/env bash
# Step 2, run ON the GPU machine from the repository root, in one device call:
#   bash scripts/gpu/run.sh
# It checks every registered op on CUDA against the CPU (scripts/backend-ops.mjs), runs
# compute-sanitizer memcheck and racecheck over a small pass of the same, and times the ops
# and the PyTorch baselines on the same card in the same run. Logs go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/fusedloss-gpu}
mkdir -p "$OUT"
xz -dc .gpu/node.xz > /tmp/node && chmod +x /tmp/node
rm -rf dist && cp -r .gpu/dist dist
mkdir -p node_modules && cp -r .gpu/node_modules/. node_modules/
export FUSEDLOSS_ADDON=$PWD/.gpu/fusedloss_cuda.node FUSEDLOSS_DEVICE=cuda
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
/tmp/node scripts/backend-ops.mjs --json "$OUT/backend-ops.json" 2>&1 | tee "$OUT/backend-ops.log" || status=1
for tool in memcheck racecheck; do
  compute-sanitizer --tool "$tool" --error-exitcode 3 /tmp/node scripts/backend-ops.mjs --small \
    > "$OUT/sanitizer-$tool.log" 2>&1 || status=1
  tail -n 3 "$OUT/sanitizer-$tool.log"
done
/tmp/node bench/gpu.mjs --json "$OUT/fusedloss-bench.json" 2>&1 | tee "$OUT/fusedloss-bench.log" || status=1
PYTHONUNBUFFERED=1 python3 scripts/gpu/torch_baselines.py --json "$OUT/torch-bench.json" 2>&1 | tee "$OUT/torch-bench.log" || status=1
/tmp/node scripts/gpu/report.mjs "$OUT/fusedloss-bench.json" "$OUT/torch-bench.json" > "$OUT/GPU_BENCH.md" && cat "$OUT/GPU_BENCH.md"
exit $status
