#!/usr/bin/env bash
# Paired A/B of the engine's per-call lookups (scripts/ab/main.rs): one binary holding two builds
# of engine/src, A from a git revision and B from another revision or the working tree, timed in
# alternation with tikv's `with_label_values` beside them (and, for the facade cases, the same
# macro call under `metrics::NoopRecorder`: the floor no recorder can go below). On a shared
# 2-core machine, criterion runs of two binaries one after the other drift by more than the
# changes measured here; the median of the per-round ratios B/A does not (two builds of the same
# code read 0.93-1.00). Being side A or side B itself moves a build by up to 5 %: for a smaller
# change run it both ways round (OLD NEW, then NEW OLD, each with its own AB_DIR) and take
# sqrt(ratio1 / ratio2), which cancels that (the same code both ways read 0.997-1.001).
#
# Usage:
#   scripts/ab.sh REV_A [REV_B] [ROUNDS] [FILTER]
#     REV_A    git revision of A (e.g. HEAD, origin/main, a commit)
#     REV_B    git revision of B, or "." (default) for the working tree
#     ROUNDS   rounds per case (default 150; 10^5 calls of each side a round)
#     FILTER   only cases whose name contains it: static-facade/1, static-by-name/1,
#              facade/16, facade/500, facade/5000, by-name/16, by-name/500, by-name/5000,
#              summary/1, summary-minmax/1, summary-fixed/1 (a held summary handle; their tikv column is tikv's
#              counter lookup of one series, for scale only)
#
# Both sides build with the working tree's engine/Cargo.toml dependencies and Cargo.lock, so a
# revision whose engine needs other dependencies cannot be an A or B.
#
# Environment:
#   AB_DIR   where the harness is built (default: ${CARGO_TARGET_DIR:-target}/ab)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rev_a=${1:?"usage: scripts/ab.sh REV_A [REV_B] [ROUNDS] [FILTER]"}
rev_b=${2:-.}
rounds=${3:-150}
filter=${4:-}
dir=${AB_DIR:-${CARGO_TARGET_DIR:-$root/target}/ab}

mkdir -p "$dir"
# The engine's sources of one side, as crate mmo-metrics-<side>.
side() {
    local side=$1 rev=$2
    rm -rf "${dir:?}/$side"
    mkdir -p "$dir/$side"
    if [ "$rev" = . ]; then
        cp -r "$root/engine/src" "$dir/$side/src"
    else
        git -C "$root" archive "$rev" engine/src | tar -x -C "$dir/$side" --strip-components=1
    fi
    # `git archive` dates files at their commit: a side switched to an older commit than its last
    # build would look up to date to cargo, which compares modification times.
    find "$dir/$side" -type f -exec touch {} +
    # The engine's own dependencies (from [features] to its dev-dependencies), under a new name.
    {
        printf '[package]\nname = "mmo-metrics-%s"\nversion = "0.1.0"\nedition = "2021"\n\n' "$side"
        sed -n '/^\[features\]/,/^\[dev-dependencies\]/p' "$root/engine/Cargo.toml" | sed '$d'
        # `--cfg loom` is the workspace's to declare; here it is never set.
        printf '[lints.rust]\nunexpected_cfgs = "allow"\n'
    } >"$dir/$side/Cargo.toml"
}
side a "$rev_a"
side b "$rev_b"
mkdir -p "$dir/h/src"
cp "$root/scripts/ab/main.rs" "$dir/h/src/main.rs"
cat >"$dir/h/Cargo.toml" <<'TOML'
[package]
name = "h"
version = "0.1.0"
edition = "2021"

[dependencies]
a = { package = "mmo-metrics-a", path = "../a" }
b = { package = "mmo-metrics-b", path = "../b" }
metrics.workspace = true
prometheus.workspace = true
TOML
# The workspace's dependency versions and lock file, and the bench profile's optimisation.
{
    printf '[workspace]\nresolver = "2"\nmembers = ["a", "b", "h"]\n\n'
    sed -n '/^\[workspace.dependencies\]/,/^\[/p' "$root/Cargo.toml" | sed '$d' | grep -v '^mmo-metrics'
    printf '\n[profile.release]\nlto = true\ncodegen-units = 1\ndebug = 1\n'
} >"$dir/Cargo.toml"
cp "$root/Cargo.lock" "$dir/Cargo.lock"

echo "==> building A ($rev_a) and B ($rev_b) in $dir" >&2
(cd "$dir" && CARGO_TARGET_DIR="$dir/target" cargo build --release -q -p h)
echo "==> $rounds rounds per case" >&2
"$dir/target/release/h" "$rounds" ${filter:+"$filter"}
