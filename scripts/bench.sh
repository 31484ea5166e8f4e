#!/usr/bin/env bash
# Runs the benchmark suite (benches/): mmo-metrics against metrics-exporter-prometheus 0.18,
# prometheus 0.14 (tikv) and prometheus-client 0.25.
#
# Usage:
#   scripts/bench.sh quick          CI check: builds every bench (no fat LTO), runs each case once
#                                   (criterion --test), the memory binary on 1,000 series and the
#                                   series-creation binary for 20 ticks on 30,000 series.
#                                   A few minutes; measures nothing.
#   scripts/bench.sh full           RUNS (default 3) full runs of every bench plus the memory
#                                   measurements, each run started in a quiet window, then
#                                   rewrites the generated tables of BENCHMARKS.md (medians over
#                                   the runs, ratios peer/ours, the machine, the command).
#                                   About 10 minutes per run on a 2-core machine.
#   scripts/bench.sh report DIR     Rewrites BENCHMARKS.md from the results in DIR (a directory a
#                                   full run made) without running anything.
#
# Environment:
#   CARGO_TARGET_DIR   target directory (default: target)
#   RUNS               full runs (default 3)
#   BENCH_OUT          where the results go (default: $CARGO_TARGET_DIR/bench-results/<UTC time>);
#                      runs already there are kept and the new ones added (the report uses all)
#   QUIET_IDLE         % of idle CPU over 5 s that counts as quiet (default 90)
#   QUIET_MAX_WAIT     seconds to wait for a quiet window before starting anyway (default 900)
#   MEMORY_SIZES       series counts of the memory measurement (default "100000 1000000")
#   BENCHES            bench binaries to run (default "batch encode record scrape_interference")
#   CREATION_TICKS     series created per run by creation_latency, one per 16 ms (default 200)
#   NO_REPORT=1        do not touch BENCHMARKS.md (results stay in BENCH_OUT)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
target_abs="$(mkdir -p "$CARGO_TARGET_DIR" && cd "$CARGO_TARGET_DIR" && pwd)"
LIBS=(mmo metrics-exporter-prometheus prometheus prometheus-client)

log() { printf 'bench.sh: %s\n' "$*" >&2; }

# Percentage of idle CPU (idle + iowait) over the next $1 seconds, from /proc/stat.
idle_percent() {
    local secs=$1 a b
    a=($(head -n1 /proc/stat))
    sleep "$secs"
    b=($(head -n1 /proc/stat))
    local total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    local idle=$((b[4] - a[4] + b[5] - a[5]))
    [ "$total" -gt 0 ] || { echo 100; return; }
    echo $((100 * idle / total))
}

# CPU seconds (user, nice, system, irq, softirq, steal) the whole machine has spent since boot.
busy_seconds() {
    awk -v hz="$(getconf CLK_TCK)" 'NR == 1 { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}

# Waits until a 5 s window has at least QUIET_IDLE % idle CPU, or QUIET_MAX_WAIT seconds passed.
wait_quiet() {
    local want=${QUIET_IDLE:-90} max=${QUIET_MAX_WAIT:-900} waited=0 idle
    [ -r /proc/stat ] || return 0
    while :; do
        idle=$(idle_percent 5)
        waited=$((waited + 5))
        if [ "$idle" -ge "$want" ]; then
            log "quiet window: ${idle}% idle over 5 s"
            echo "$idle"
            return 0
        fi
        if [ "$waited" -ge "$max" ]; then
            log "no quiet window in ${max} s (last: ${idle}% idle); starting anyway"
            echo "$idle"
            return 0
        fi
    done
}

quick() {
    # As CI: no fat LTO, so the build is quick; the point is that every case builds and runs.
    export CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16
    log "building the benches"
    cargo bench -p mmo-metrics-benches --no-run
    log "running every bench case once (criterion --test)"
    cargo bench -p mmo-metrics-benches -- --test
    log "memory binary on 1,000 series per library"
    cargo build --profile bench -p mmo-metrics-benches --bin memory_peers
    local lib
    for lib in "${LIBS[@]}"; do
        "$target_abs/release/memory_peers" "$lib" 1000
    done
    "$target_abs/release/memory_peers" mmo 1000 16
    log "series creation while encoding: 20 ticks, 30,000 series"
    cargo build --profile bench -p mmo-metrics-benches --bin creation_latency
    "$target_abs/release/creation_latency" 20 30000
    log "quick: OK"
}

machine_info() {
    {
        echo "cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')"
        echo "cores=$(nproc)"
        echo "memory_kib=$(awk '/MemTotal/ {print $2}' /proc/meminfo 2>/dev/null)"
        echo "kernel=$(uname -sr)"
        echo "rustc=$(rustc --version)"
        echo "cargo=$(cargo --version)"
        echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
        if [ -n "$(git status --porcelain 2>/dev/null)" ]; then echo "dirty=yes"; else echo "dirty=no"; fi
        echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        local hv
        hv=$(grep -m1 -o 'hypervisor' /proc/cpuinfo 2>/dev/null || true)
        echo "virtualised=${hv:+yes}"
        local crate
        for crate in criterion metrics metrics-exporter-prometheus prometheus prometheus-client; do
            echo "crate_${crate}=$(awk -v n="$crate" '$0 == "name = \"" n "\"" {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)"
        done
    } >"$1"
}

full() {
    local runs=${RUNS:-3}
    local out=${BENCH_OUT:-$target_abs/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
    mkdir -p "$out"
    log "results in $out"
    # Runs already in BENCH_OUT are kept: new runs are numbered after them (more runs, one report).
    local first
    first=$(($(find "$out" -maxdepth 1 -name 'run*' -type d | wc -l) + 1))
    # Written afresh while the directory holds no run (a run stopped during the build leaves only
    # this file, which must not keep that attempt's commit and date).
    [ "$first" -gt 1 ] && [ -f "$out/machine.txt" ] || machine_info "$out/machine.txt"
    log "building (bench profile: fat LTO)"
    cargo bench -p mmo-metrics-benches --no-run
    cargo build --profile bench -p mmo-metrics-benches --bin memory_peers --bin creation_latency
    local run
    for run in $(seq "$first" $((first + runs - 1))); do
        local dir="$out/run$run"
        mkdir -p "$dir"
        # The code this run measures (runs added later to the same BENCH_OUT may measure another).
        { git rev-parse --short HEAD 2>/dev/null || echo unknown; } | tr -d '\n' >"$dir/commit.txt"
        [ -z "$(git status --porcelain 2>/dev/null)" ] || echo -n "+dirty" >>"$dir/commit.txt"
        vmstat 5 >"$dir/vmstat.log" 2>/dev/null &
        local vm=$! bench
        # One bench binary at a time, each started in a quiet window (others may share the machine).
        for bench in ${BENCHES:-batch encode record scrape_interference}; do
            wait_quiet >>"$dir/idle_before.txt"
            log "run $run: cargo bench -p mmo-metrics-benches --bench $bench"
            local b0 t0=$SECONDS
            b0=$(busy_seconds)
            TIMEFORMAT='%U %S'
            { time CRITERION_HOME="$dir/criterion" cargo bench -p mmo-metrics-benches --bench "$bench" \
                >>"$dir/bench.log" 2>&1; } 2>"$dir/time.tmp"
            # CPU time other processes took during the bench, as a share of the machine.
            python3 - "$b0" "$(busy_seconds)" "$((SECONDS - t0))" "$(nproc)" $(cat "$dir/time.tmp") "$bench" \
                >>"$dir/noise.txt" <<'PY'
import sys
b0, b1, wall, cores, user, system, bench = sys.argv[1:8]
own = float(user) + float(system)
other = max(0.0, float(b1) - float(b0) - own)
print(f"bench={bench} wall={wall} own_cpu={own:.1f} other_cpu={other:.1f} "
      f"other_percent={100 * other / max(1, int(wall) * int(cores)):.1f}")
PY
            log "run $run: $(tail -n 1 "$dir/noise.txt")"
        done
        wait_quiet >>"$dir/idle_before.txt"
        log "run $run: series creation while encoding (300,000 series)"
        "$target_abs/release/creation_latency" "${CREATION_TICKS:-200}" 300000 | tee -a "$dir/creation.log" >&2
        log "run $run: memory"
        local n lib
        for n in ${MEMORY_SIZES:-100000 1000000}; do
            for lib in "${LIBS[@]}"; do
                "$target_abs/release/memory_peers" "$lib" "$n" | tee -a "$dir/memory.log" >&2
            done
            "$target_abs/release/memory_peers" mmo "$n" 16 | tee -a "$dir/memory.log" >&2
        done
        kill "$vm" 2>/dev/null || true
        wait "$vm" 2>/dev/null || true
    done
    if [ "${NO_REPORT:-0}" != 1 ]; then
        report "$out"
    fi
}

report() {
    local dir=$1
    python3 benches/report.py "$dir" BENCHMARKS.md
    log "BENCHMARKS.md rewritten from $dir"
}

case "${1:-}" in
    quick) quick ;;
    full) full ;;
    report)
        [ -n "${2:-}" ] || { log "usage: scripts/bench.sh report DIR"; exit 2; }
        report "$2"
        ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 2
        ;;
esac
