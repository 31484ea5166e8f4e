#!/usr/bin/env bash
# Starts the metrics service in the background.
#
# Usage: scripts/start_metrics.sh [ADDR | -addr=ADDR] [-interval=DURATION] [other flags of the service]
#   ADDR defaults to :9100 (every interface, port 9100; or $METRICS_ADDR); 127.0.0.1:9200 listens
#   on loopback only.
#
# Builds the `metrics` service (exporter/src/bin/metrics/) in release mode when needed, installs
# it as bin/metrics, starts it in the background, waits until /health answers, prints the URL, and
# refuses to start a second copy. Log: logs/metrics.log. Pid: logs/metrics.pid.
# Stop it with scripts/stop_metrics.sh.
#
# Environment: METRICS_RUN_DIR (where bin/ and logs/ go; default: the repository), METRICS_BIN
# (install this binary instead of building one), METRICS_START_TIMEOUT (seconds, default 30).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
run_dir="${METRICS_RUN_DIR:-$root}"
log_dir="$run_dir/logs"
log_file="$log_dir/metrics.log"
pid_file="$log_dir/metrics.pid"
wait_secs="${METRICS_START_TIMEOUT:-30}"

# The address: the first non-flag argument, or -addr=/--addr=/-addr X, or $METRICS_ADDR. It is
# passed on as -addr=ADDR (both the service and the example read that form); other arguments are
# passed on as they are.
addr="${METRICS_ADDR:-:9100}"
args=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        -addr=* | --addr=*) addr=${1#*=} ;;
        -addr | --addr) addr=${2:-}; shift ;;
        -interval | --interval | -label | --label | -log-level | --log-level) args+=("$1" "${2:-}"); shift ;;
        -*) args+=("$1") ;;
        *) addr=$1 ;;
    esac
    shift
done
args=("-addr=$addr" "${args[@]}")

# Where to check health: the port of the address, on loopback when it listens on every interface.
port=${addr##*:}
host=${addr%:*}
host=${host#[}
host=${host%]}
case "$host" in
    "" | 0.0.0.0) host=127.0.0.1 ;;
    "::") host=::1 ;;
esac
if ! [[ "$port" =~ ^[0-9]+$ ]]; then
    echo "start_metrics.sh: cannot read a port from address '$addr'" >&2
    exit 2
fi
case "$host" in
    *:*) url_host="[$host]" ;;
    *) url_host=$host ;;
esac
base_url="http://$url_host:$port"

mkdir -p "$log_dir"

# Alive: signalable and not a zombie (an exited child stays one until reaped).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
    [ "$state" != "Z" ]
}

if [ -f "$pid_file" ]; then
    old_pid=$(cat "$pid_file" 2>/dev/null || true)
    if [ -n "$old_pid" ] && alive "$old_pid"; then
        echo "start_metrics.sh: already running (pid $old_pid, pid file $pid_file); stop it first with scripts/stop_metrics.sh" >&2
        exit 1
    fi
    echo "start_metrics.sh: removing stale pid file (pid ${old_pid:-?} is not running)"
    rm -f "$pid_file"
fi

# health: 0 when GET /health answers 200.
health() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 2 -o /dev/null "$base_url/health" 2>/dev/null
    else
        local status
        status=$(
            exec 3<>"/dev/tcp/$host/$port" || exit 1
            printf 'GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$url_host:$port" >&3
            timeout 2 head -n 1 <&3 || true
        ) 2>/dev/null || return 1
        [[ "$status" == "HTTP/1."?" 200"* ]]
    fi
}

if health; then
    echo "start_metrics.sh: something already answers on $base_url/health (not started by this script?)" >&2
    echo "start_metrics.sh: port $port is in use; pass another address, e.g. scripts/start_metrics.sh -addr=:9200" >&2
    exit 1
fi

what="the metrics service"
mkdir -p "$run_dir/bin"
bin="$run_dir/bin/metrics"
if [ -n "${METRICS_BIN:-}" ]; then
    built=$METRICS_BIN
else
    target_dir=${CARGO_TARGET_DIR:-$root/target}
    echo "start_metrics.sh: building $what (cargo build --release -p mmo-metrics-exporter --features service --bin metrics)"
    cargo build --release -p mmo-metrics-exporter --features service --bin metrics
    built="$target_dir/release/metrics"
fi
if [ ! -x "$built" ]; then
    echo "start_metrics.sh: built binary not found at $built" >&2
    exit 1
fi
if ! cmp -s "$built" "$bin"; then
    install -m 755 "$built" "$bin.new" && mv -f "$bin.new" "$bin"
fi

{
    echo ""
    echo "=== $(date '+%Y-%m-%d %H:%M:%S') start_metrics.sh: $bin ${args[*]}"
} >>"$log_file"
nohup "$bin" "${args[@]}" >>"$log_file" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pid_file"

deadline=$((SECONDS + wait_secs))
until health; do
    if ! alive "$pid"; then
        rm -f "$pid_file"
        echo "start_metrics.sh: $bin exited during startup; last lines of $log_file:" >&2
        tail -n 20 "$log_file" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "start_metrics.sh: no answer on $base_url/health after ${wait_secs}s; stopping pid $pid" >&2
        kill "$pid" 2>/dev/null || true
        rm -f "$pid_file"
        tail -n 20 "$log_file" >&2
        exit 1
    fi
    sleep 0.2
done

echo "start_metrics.sh: $what running (pid $pid, $bin)"
echo "  metrics: $base_url/metrics"
echo "  health:  $base_url/health"
echo "  log:     $log_file"
echo "  stop:    scripts/stop_metrics.sh"
