#!/usr/bin/env bash
# Step 2, run ON the GPU machine from the repository root (see scripts/gpu/README.md):
#   bash scripts/gpu/run.sh            everything, in the order below
#   bash scripts/gpu/run.sh check      correctness only (parity, matrix, layouts, edges, determinism, sanitizers)
#   bash scripts/gpu/run.sh perf       Nsight Compute DRAM bytes per op, the bench, the PyTorch baselines
#   bash scripts/gpu/run.sh embeddings linearCrossEntropy and the <loss>FromEmbeddings: CUDA vs CPU (sync
#                                      and async), memcheck on the small cases, the bench against PyTorch
#   bash scripts/gpu/run.sh sharded    shardedLoss on device blocks (cuda/sharded.cu): every loss, the CLIP
#                                      form, fp16/bf16 blocks, R = 1 and 3, CUDA vs CPU; memcheck on the small ones
#   bash scripts/gpu/run.sh STEP...    any of the step names below
# Each step has its own time limit (the device tool allows 10 minutes a command and 15 in all),
# writes its log to $OUT and a line to $OUT/SUMMARY.txt; a step that fails or times out does not
# stop the others. The exit status is 1 when any step failed.
set -uo pipefail
OUT=${OUT:-/tmp/fusedloss-gpu}
mkdir -p "$OUT"
if [ ! -x /tmp/node ]; then xz -dc .gpu/node.xz > /tmp/node && chmod +x /tmp/node; fi
rm -rf dist && cp -r .gpu/dist dist
mkdir -p node_modules && cp -r .gpu/node_modules/. node_modules/
export FUSEDLOSS_ADDON=$PWD/.gpu/fusedloss_cuda.node FUSEDLOSS_DEVICE=cuda
NODE=/tmp/node
status=0

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local verdict=ok
  [ $rc -eq 124 ] && verdict="TIMED OUT after ${limit}s"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && verdict="FAILED (exit $rc)"
  [ $rc -ne 0 ] && status=1
  printf '%-22s %-28s %4ds  %s\n' "$name" "$verdict" $((SECONDS - t0)) "$(tail -n 1 "$OUT/$name.log")" | tee -a "$OUT/SUMMARY.txt"
}

sanitize() {  # compute-sanitizer TOOL over the small matrix (every op × dtype × grad variant)
  compute-sanitizer --tool "$1" --error-exitcode 3 --print-limit 20 $NODE scripts/gpu/checks.mjs matrix
}

ncu_ops() {  # DRAM bytes and time of every kernel of one large call per op, against the ideal
  for op in logSumExp softmaxCrossEntropy decoupledSoftmax multiLabelSoftmax binaryCrossEntropy softTopKLoss infoNCE infoNCEOneWay decoupledContrastive; do
    ncu --csv --print-units base --metrics dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum \
      $NODE scripts/gpu/checks.mjs ncu --op "$op" > "$OUT/ncu-$op.csv" 2> "$OUT/ncu-$op.err" || echo "ncu $op failed"
  done
  $NODE scripts/gpu/ncu_report.mjs "$OUT" > "$OUT/NCU.md" && cat "$OUT/NCU.md"
}

run_step() {
  case $1 in
    info) step info 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv; $NODE -e \"console.log(JSON.stringify(require('./dist/index.js').backendInfo().cuda))\"" ;;
    parity) step parity 150 $NODE scripts/backend-ops.mjs --json "$OUT/backend-ops.json" ;;
    matrix) step matrix 120 $NODE scripts/gpu/checks.mjs matrix --json "$OUT/matrix.json" ;;
    layouts) step layouts 120 $NODE scripts/gpu/checks.mjs layouts --json "$OUT/layouts.json" ;;
    edges) step edges 60 $NODE scripts/gpu/checks.mjs edges --json "$OUT/edges.json" ;;
    determinism) step determinism 90 $NODE scripts/gpu/checks.mjs determinism --json "$OUT/determinism.json" ;;
    memcheck | racecheck | synccheck) step "sanitizer-$1" 150 bash -c "sanitize $1" ;;
    ncu) step ncu 240 bash -c ncu_ops ;;
    bench) step bench 150 $NODE bench/gpu.mjs --json "$OUT/fusedloss-bench.json" ;;
    torch) step torch 150 env PYTHONUNBUFFERED=1 python3 scripts/gpu/torch_baselines.py --json "$OUT/torch-bench.json" ;;
    parity-embeddings) step parity-embeddings 150 $NODE scripts/backend-ops.mjs --embeddings --json "$OUT/backend-ops-embeddings.json" ;;
    sanitizer-embeddings) step sanitizer-embeddings 240 compute-sanitizer --tool memcheck --error-exitcode 3 --print-limit 20 $NODE scripts/backend-ops.mjs --embeddings --small ;;
    parity-sharded) step parity-sharded 150 $NODE scripts/backend-ops.mjs --op shardedLoss --json "$OUT/backend-ops-sharded.json" ;;
    sanitizer-sharded) step sanitizer-sharded 200 compute-sanitizer --tool memcheck --error-exitcode 3 --print-limit 20 $NODE scripts/backend-ops.mjs --op shardedLoss --small ;;
    bench-embeddings) step bench-embeddings 200 $NODE bench/gpu-embeddings.mjs --json "$OUT/fusedloss-embeddings.json" ;;
    torch-embeddings) step torch-embeddings 150 env PYTHONUNBUFFERED=1 python3 scripts/gpu/torch_embeddings.py --json "$OUT/torch-embeddings.json" ;;
    report-embeddings) step report-embeddings 30 bash -c "$NODE scripts/gpu/report-embeddings.mjs '$OUT/fusedloss-embeddings.json' '$OUT/torch-embeddings.json' > '$OUT/GPU_BENCH_EMBEDDINGS.md' && cat '$OUT/GPU_BENCH_EMBEDDINGS.md'" ;;
    report) step report 30 bash -c "$NODE scripts/gpu/report.mjs '$OUT/fusedloss-bench.json' '$OUT/torch-bench.json' > '$OUT/GPU_BENCH.md' && cat '$OUT/GPU_BENCH.md'" ;;
    *) echo "unknown step $1" >&2; status=1 ;;
  esac
}
export -f sanitize ncu_ops
export NODE OUT

check_steps="info parity matrix layouts edges determinism memcheck racecheck synccheck"
perf_steps="ncu bench torch report"
embeddings_steps="info parity-embeddings sanitizer-embeddings bench-embeddings torch-embeddings report-embeddings"
sharded_steps="info parity-sharded sanitizer-sharded"
steps=()
[ $# -eq 0 ] && set -- check perf
for a in "$@"; do
  case $a in
    check) steps+=($check_steps) ;;
    perf) steps+=($perf_steps) ;;
    embeddings) steps+=($embeddings_steps) ;;
    sharded) steps+=($sharded_steps) ;;
    *) steps+=("$a") ;;
  esac
done
: > "$OUT/SUMMARY.txt"
for s in "${steps[@]}"; do run_step "$s"; done
echo "---- summary ($OUT/SUMMARY.txt)"
cat "$OUT/SUMMARY.txt"
exit $status
