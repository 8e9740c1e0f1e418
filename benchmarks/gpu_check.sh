#!/usr/bin/env bash
# The GPU paths in one run, on a machine with one CUDA GPU (aimed at under 8 minutes; each
# step is capped, and a capped step fails the run):
#   benchmarks/gpu_check.sh [RESULTS_DIR]        (default: gpu-results/<date>)
# Each step's output is kept in RESULTS_DIR (<step>.log) and a summary in summary.txt.
# Without a CUDA GPU it exits 2 and says so. Steps that this checkout cannot run yet say
# so in the summary instead of failing the rest.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "benchmarks/gpu_check.sh needs a CUDA GPU: torch.cuda.is_available() is False here" \
       "($("$PY" -c 'import torch; print("torch", torch.__version__, "CUDA build:", torch.version.cuda)' 2>/dev/null || echo 'torch not importable'))." >&2
  echo "On CPU the same trainer is measured by benchmarks/train_throughput.py." >&2
  exit 2
fi

OUT="${1:-gpu-results/$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1 || true
echo "gpu: $(tail -n +2 "$OUT/gpu.csv" | head -1)" | tee "$SUMMARY"
failed=0

step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local started=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local line="$name: rc=$rc in $((SECONDS - started)) s (log: $OUT/$name.log)"
  [ $rc -eq 0 ] || failed=1
  echo "$line" | tee -a "$SUMMARY"
  tail -n 15 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
}

# 1. training: ZeRO-3, bf16, packed flash varlen vs padded; tokens/s and MFU
step train_gpu 300 "$PY" benchmarks/train_gpu.py --steps 20
# 2. every example's loss inside a pack equals its loss alone, on this GPU (fp32: sdpa,
#    eager, the flattened row, sdpa_varlen), and the varlen gradients equal the mask's
step gpu_packed_loss 180 env AGENTRAY_TEST_DEVICE=cuda "$PY" -m pytest -q -x tests/train/test_train_packed.py -k "packing_does_not_change or varlen_sdpa_gives"
# 3. vLLM: the policy backend and the Serve app, where the vllm extra is installed
if "$PY" -c "import vllm" 2>/dev/null; then
  step vllm_policy 120 "$PY" -m pytest -q -x -k vllm tests/policies/test_policies.py
  # the vLLM column beside HF batched and one at a time (same greedy tokens counted)
  step vllm_batching 180 "$PY" benchmarks/policy_batching.py --rounds 1 --scenarios db
  # ray.serve.llm beside the hf app, 32 clients
  step vllm_serve 240 "$PY" benchmarks/serve_throughput.py --seconds 10 --vllm
else
  echo "vllm: not installed here (pip install 'agentray[vllm]'); its steps skipped" | tee -a "$SUMMARY"
fi
echo "results: $OUT" | tee -a "$SUMMARY"
exit $failed
