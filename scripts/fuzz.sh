#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (one per exposition encoder, and the remote write receiver) for a bounded time; fails when a
# target finds an input that makes it fail (the input is kept in fuzz/artifacts/<target>/).
# Installs cargo-fuzz when it is missing. scripts/test.sh runs this as one of its steps.
#
# Usage: scripts/fuzz.sh [TARGET...]     (default: every target `cargo fuzz list` names)
#
# Environment:
#   FUZZ_SECONDS       time per target (default 20)
#   FUZZ_MAX_LEN       largest input in bytes (default 2048)
#   CARGO_TARGET_DIR   the fuzz build goes to its `fuzz/` subdirectory (default: target/fuzz)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# cargo-fuzz builds with sanitizer options that are nightly-only; RUSTC_BOOTSTRAP lets the stable
# toolchain the project builds with accept them.
export RUSTC_BOOTSTRAP=1

seconds=${FUZZ_SECONDS:-20}
max_len=${FUZZ_MAX_LEN:-2048}
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in
    /*) ;;
    *) target_dir="$PWD/$target_dir" ;;
esac
target_dir="$target_dir/fuzz"

log() { printf 'fuzz.sh: %s\n' "$*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo-fuzz missing; installing it (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi
log "$(cargo fuzz --version)"

cd fuzz
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
[ "${#targets[@]}" -gt 0 ] || { log "no fuzz targets in fuzz/Cargo.toml"; exit 1; }

mkdir -p "$target_dir"
failed=()
for t in "${targets[@]}"; do
    out="$target_dir/$t.log"
    log "$t: building, then fuzzing for $seconds s (output in $out)"
    # -len_control=0: inputs up to max_len from the start. A short run otherwise spends its time
    # on inputs of a few bytes, which build registries of one or two operations.
    if cargo fuzz run --target-dir "$target_dir" "$t" -- \
        -max_total_time="$seconds" -max_len="$max_len" -len_control=0 >"$out" 2>&1; then
        log "$t: ok, $(grep -E '^Done [0-9]+ runs' "$out" | tail -n 1)"
    else
        failed+=("$t")
        # The panic message comes before the backtrace, which alone fills the last lines.
        if grep -q "panicked at" "$out"; then
            log "$t: FAILED; the panic:"
            grep -m 1 -A 40 "panicked at" "$out"
        fi
        log "$t: FAILED; the end of its output:"
        tail -n 30 "$out"
        for a in artifacts/"$t"/*; do
            [ -f "$a" ] && log "$t: failing input $a (base64): $(base64 -w 0 "$a" | head -c 8192)"
        done
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    log "failed targets: ${failed[*]} (crashing inputs in fuzz/artifacts/; replay one with"
    log "  cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET artifacts/TARGET/crash-...)"
    exit 1
fi
log "${#targets[@]} target(s), $seconds s each: no failure"
