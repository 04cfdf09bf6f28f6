#!/usr/bin/env bash
# The performance suite: builds --release, runs every example's scale mode
# with fixed sizes, and writes target/bench/results.{md,json} and the
# benchmark's SVG chart. Full mode runs each workload 3 times and quotes
# medians (minutes); `--quick` uses tiny sizes once each (what CI runs).
# Other flags: --repeat N, --only SUBSTRING, --out DIR (perf-suite --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything is built before anything is measured, so no compiler competes
# with a workload for the CPU: the release bins (every benchmark is a --bench mode).
cargo build --release --workspace --bins

exec "${CARGO_TARGET_DIR:-target}/release/perf-suite" --no-build "$@"
