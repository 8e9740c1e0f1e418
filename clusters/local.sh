#!/usr/bin/env bash
# A local Ray cluster on this machine: a head node plus, optionally, a second node, then
# jobs are submitted to it exactly as to a remote cluster.
#   bash clusters/local.sh up [--worker]    # start (head at 127.0.0.1:6379, dashboard :8265)
#   ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
#       python -m jobs pipeline --config configs/quickstart.yaml
#   bash clusters/local.sh down
set -euo pipefail
PORT="${RAY_PORT:-6379}"
DASH="${RAY_DASHBOARD_PORT:-8265}"
export RAY_AUTH_MODE=disabled
case "${1:-up}" in
  up)
    ray start --head --port "$PORT" --dashboard-host 127.0.0.1 --dashboard-port "$DASH" \
      --num-cpus "${HEAD_CPUS:-2}"
    if [ "${2:-}" = "--worker" ]; then
      ray start --address "127.0.0.1:$PORT" --num-cpus "${WORKER_CPUS:-2}"
    fi
    echo "dashboard: http://127.0.0.1:$DASH" ;;
  down) ray stop --force ;;
  *) echo "usage: $0 up [--worker] | down" >&2; exit 2 ;;
esac
