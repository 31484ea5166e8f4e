#!/usr/bin/env bash
# Runs every check of the project: format, lints, docs, all tests (unit, integration, doctests,
# the exposition checks against promtool and Python's prometheus_client, the push tests against real
# Prometheus, Pushgateway and VictoriaMetrics servers), the loom models, the engine's tests under
# AddressSanitizer, a build of the benches and a bounded run of every fuzz target (scripts/fuzz.sh;
# FUZZ_SECONDS per target, default 20). Installs the external tools the tests need when they are missing; no test
# is skipped for want of a tool (MMO_REQUIRE_TOOLS=1 turns a missing tool into a failure).
#
# Usage: scripts/test.sh            (from anywhere; it works from the repository root)
# Ends with `test.sh: N passed, M failed` and exits non-zero when any step failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export MMO_REQUIRE_TOOLS=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The Python interpreter the exposition tests run (they read MMO_PYTHON, default python3).
export MMO_PYTHON="${MMO_PYTHON:-python3}"
# A CI checkout is built once: incremental caches would only take disk (they doubled target/).
if [ "${CI:-}" = "true" ]; then
    export CARGO_INCREMENTAL=0
fi

passed=0
failed=0
failed_steps=()
started_all=$SECONDS

log() { printf '%s\n' "$*"; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
    else
        log "test.sh: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "test.sh: apt-get not found; cannot install $*" >&2
        return 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

have_python_client() {
    "$MMO_PYTHON" -c 'import prometheus_client.parser' >/dev/null 2>&1
}

install_tools() {
    if ! command -v promtool >/dev/null 2>&1; then
        log "test.sh: promtool missing; installing the Debian package prometheus"
        apt_install prometheus
    fi
    command -v promtool >/dev/null 2>&1 || { log "test.sh: promtool still missing after install" >&2; return 1; }

    command -v prometheus >/dev/null 2>&1 || apt_install prometheus
    # The TLS tests make certificates with openssl, scrape with curl, and check an htpasswd hash.
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    command -v curl >/dev/null 2>&1 || apt_install curl
    command -v htpasswd >/dev/null 2>&1 || apt_install apache2-utils
    # The Pushgateway client's tests push to a real one.
    command -v prometheus-pushgateway >/dev/null 2>&1 || apt_install prometheus-pushgateway
    command -v victoria-metrics >/dev/null 2>&1 || apt_install victoria-metrics
    if ! command -v chromium >/dev/null 2>&1; then
        log "test.sh: chromium missing (the live view test renders the page); installing the Debian package"
        apt_install chromium
    fi
    command -v chromium >/dev/null 2>&1 || { log "test.sh: chromium still missing after install" >&2; return 1; }

    if ! command -v "$MMO_PYTHON" >/dev/null 2>&1; then
        log "test.sh: $MMO_PYTHON missing; installing python3"
        apt_install python3
    fi
    if ! have_python_client; then
        log "test.sh: Python prometheus_client missing; installing it with pip"
        if ! "$MMO_PYTHON" -m pip --version >/dev/null 2>&1; then
            "$MMO_PYTHON" -m ensurepip --upgrade >/dev/null 2>&1 || apt_install python3-pip || true
        fi
        "$MMO_PYTHON" -m pip install -q prometheus_client \
            || "$MMO_PYTHON" -m pip install -q --user prometheus_client \
            || "$MMO_PYTHON" -m pip install -q --break-system-packages prometheus_client \
            || apt_install python3-prometheus-client \
            || true
    fi
    have_python_client || { log "test.sh: $MMO_PYTHON cannot import prometheus_client after install" >&2; return 1; }
    log "promtool: $(promtool --version 2>&1 | head -n1)"
    log "prometheus_client: $("$MMO_PYTHON" -c 'import importlib.metadata as m; print(m.version("prometheus_client"))' 2>/dev/null || echo present)"
}

# step NAME COMMAND...: prints a header, runs the command, counts the result.
step() {
    local name=$1
    shift
    local t0=$SECONDS
    log ""
    log "==> test.sh step: $name"
    log "    \$ $*"
    if "$@"; then
        passed=$((passed + 1))
        log "==> ok: $name ($((SECONDS - t0)) s)"
    else
        local rc=$?
        failed=$((failed + 1))
        failed_steps+=("$name")
        log "==> FAILED: $name (exit $rc, $((SECONDS - t0)) s)"
    fi
    disk_report
}

# One line after each step: what target/ holds and what the disk has left, so that a step that
# fails for want of space says so plainly.
disk_report() {
    local used free
    used=$(du -sh "${CARGO_TARGET_DIR:-target}" 2>/dev/null | cut -f1 || true)
    free=$(df -h . 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
    log "    disk: target/ ${used:-?}, free ${free:-?}"
}

loom_models() {
    RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom" \
        cargo test -p mmo-metrics --test loom --release
}

# The engine's unit and integration tests under AddressSanitizer (nightly flags on the stable
# compiler, as the fuzz targets use): its unsafe code (mapped counter chunks, the per-thread caches'
# raw pointers, the lent facade handle) is exercised with every access checked. The one test that
# measures resident memory is left to the plain run: ASan's shadow memory is counted in it.
asan_tests() {
    local host
    host=$(rustc -vV | sed -n 's/^host: //p')
    RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/asan" \
        cargo test -p mmo-metrics --target "$host" --lib --tests --no-fail-fast \
        -- --skip unwritten_shards_take_no_memory
}

bench_build() {
    # CI quick mode: check the benches compile without paying for the bench profile's fat LTO.
    CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16 \
        cargo bench -p mmo-metrics-benches --no-run
}

# scripts/ab.sh, the harness BENCHMARKS.md's A/B figures come from, still builds both sides and
# runs every case (2 rounds, without the fat LTO it measures with).
ab_harness() {
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 scripts/ab.sh HEAD . 2
}

step "install test tools (prometheus, promtool, pushgateway, victoria-metrics, openssl, curl, htpasswd, prometheus_client, chromium)" install_tools
step "cargo fmt --check" cargo fmt --all -- --check
# --all-features: the `metrics` service and the tests that run it are behind the exporter's
# `service` feature, which keeps their command-line dependencies out of the library.
step "cargo clippy -D warnings" cargo clippy --workspace --all-targets --all-features -- -D warnings
step "cargo doc -D warnings" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
step "cargo test --workspace" cargo test --workspace --all-features --no-fail-fast
if [ -f engine/tests/loom.rs ]; then
    step "loom models" loom_models
else
    log ""
    log "==> test.sh: engine/tests/loom.rs does not exist yet; no loom models to run"
fi
step "engine tests under AddressSanitizer" asan_tests
step "cargo bench --no-run (benches build)" bench_build
step "paired A/B harness (scripts/ab.sh HEAD against the tree, 2 rounds)" ab_harness
# Installs cargo-fuzz when missing; fails when a target finds a failing input.
step "fuzz targets (${FUZZ_SECONDS:-20} s each)" scripts/fuzz.sh

log ""
if [ "$failed" -gt 0 ]; then
    log "test.sh: failed steps: ${failed_steps[*]}"
fi
log "test.sh: total $((SECONDS - started_all)) s"
log "test.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
