#!/usr/bin/env bash
# A Ray cluster of its own on this machine: a head node plus, optionally, a second node; jobs
# are then submitted to it exactly as to a remote cluster. It keeps its own temp dir, state
# and ports, and `down` ends only the processes it started (never `ray stop`, which would
# stop every Ray cluster on the machine, other people's included).
#   bash clusters/local.sh up [--worker]    # head at 127.0.0.1:$RAY_PORT, dashboard :$RAY_DASHBOARD_PORT
#   ray job submit --address http://127.0.0.1:8266 --working-dir . -- \
#       python -m jobs pipeline --config configs/quickstart.yaml --run-dir /tmp/agentray-runs/qs
#   bash clusters/local.sh down
set -euo pipefail
STATE="${AGENTRAY_LOCAL_CLUSTER:-/tmp/agentray-local-cluster}"
PORT="${RAY_PORT:-6390}"            # not Ray's default 6379, which another cluster may hold
DASH="${RAY_DASHBOARD_PORT:-8266}"
RAY="${RAY:-$(command -v ray || echo "$(dirname "$0")/../.venv/bin/ray")}"
PY="$(dirname "$RAY")/python"
[ -x "$PY" ] || PY=python3
export RAY_AUTH_MODE=disabled

free_ports() {  # N ports nobody listens on now
  "$PY" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

node_ports() {  # the ports each node of this machine needs of its own
  read -r a b c d e f <<< "$(free_ports 6)"
  echo "--node-manager-port=$a --object-manager-port=$b --dashboard-agent-listen-port=$c" \
       "--dashboard-agent-grpc-port=$d --runtime-env-agent-port=$e --metrics-export-port=$f"
}

start_node() {  # `ray start --block` as the leader of its own process group; its id recorded
  local name=$1
  shift
  # shellcheck disable=SC2046
  setsid "$RAY" start "$@" $(node_ports) --temp-dir="$STATE/$name" --block \
    > "$STATE/$name.log" 2>&1 < /dev/null &
  echo $! > "$STATE/$name.pgid"
}

wait_for_nodes() {  # until N nodes are alive (or 120 s)
  "$PY" - "127.0.0.1:$PORT" "$1" "$STATE" <<'EOF'
import sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
deadline = time.monotonic() + 120
while sum(n["Alive"] for n in ray.nodes()) < int(sys.argv[2]):
    if time.monotonic() > deadline:
        sys.exit(f"fewer than {sys.argv[2]} nodes came up; logs in {sys.argv[3]}")
    time.sleep(0.5)
EOF
}

group_running() {  # whether a process of group $1 still runs (zombies aside)
  ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {found = 1} END {exit !found}'
}

case "${1:-up}" in
  up)
    if ls "$STATE"/*.pgid >/dev/null 2>&1; then
      echo "a local cluster is already up (state in $STATE); run: $0 down" >&2
      exit 1
    fi
    mkdir -p "$STATE"
    start_node head --head --port="$PORT" --dashboard-host=127.0.0.1 \
      --dashboard-port="$DASH" --num-cpus="${HEAD_CPUS:-2}" --disable-usage-stats
    nodes=1
    if [ "${2:-}" = "--worker" ]; then
      start_node worker --address="127.0.0.1:$PORT" --num-cpus="${WORKER_CPUS:-2}"
      nodes=2
    fi
    wait_for_nodes "$nodes"
    echo "cluster: 127.0.0.1:$PORT ($nodes nodes), dashboard and jobs: http://127.0.0.1:$DASH" ;;
  down)
    for file in "$STATE"/*.pgid; do
      [ -e "$file" ] || continue
      pgid=$(cat "$file")
      kill -KILL -- "-$pgid" 2>/dev/null || true
      for _ in $(seq 100); do group_running "$pgid" || break; sleep 0.1; done
      rm -f "$file"
    done
    rm -rf "$STATE"
    echo "stopped the local cluster of $STATE" ;;
  *) echo "usage: $0 up [--worker] | down" >&2; exit 2 ;;
esac
