#!/usr/bin/env bash
# Stops the metrics exporter started by scripts/start_metrics.sh (pid in logs/metrics.pid):
# SIGTERM, wait up to $METRICS_STOP_TIMEOUT seconds (default 10), then SIGKILL.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
run_dir="${METRICS_RUN_DIR:-.}"
pid_file="$run_dir/logs/metrics.pid"
wait_secs="${METRICS_STOP_TIMEOUT:-10}"

# Alive: signalable and not a zombie waiting for a parent that does not reap.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
    [ "$state" != "Z" ]
}

if [ ! -f "$pid_file" ]; then
    echo "stop_metrics.sh: not running (no $pid_file)"
    exit 0
fi
pid=$(cat "$pid_file" 2>/dev/null || true)
if ! [[ "$pid" =~ ^[0-9]+$ ]]; then
    echo "stop_metrics.sh: $pid_file does not hold a pid ('$pid'); removing it" >&2
    rm -f "$pid_file"
    exit 1
fi
if ! alive "$pid"; then
    echo "stop_metrics.sh: pid $pid is not running; removing the stale $pid_file"
    rm -f "$pid_file"
    exit 0
fi
# Never signal a process that merely reused the pid.
if [ -r "/proc/$pid/cmdline" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'metrics'; then
    echo "stop_metrics.sh: pid $pid is not the metrics exporter ($(tr '\0' ' ' <"/proc/$pid/cmdline")); removing the stale $pid_file" >&2
    rm -f "$pid_file"
    exit 1
fi

echo "stop_metrics.sh: sending SIGTERM to pid $pid"
kill -TERM "$pid"
deadline=$((SECONDS + wait_secs))
while alive "$pid"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "stop_metrics.sh: pid $pid still running after ${wait_secs}s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
        break
    fi
    sleep 0.1
done
rm -f "$pid_file"
if alive "$pid"; then
    echo "stop_metrics.sh: pid $pid could not be stopped" >&2
    exit 1
fi
echo "stop_metrics.sh: stopped (pid $pid); log in $run_dir/logs/metrics.log"
