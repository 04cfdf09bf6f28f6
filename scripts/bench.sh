#!/usr/bin/env bash
# The performance suite: builds --release, runs every example's scale mode
# with fixed sizes, and writes target/bench/results.{md,json} and the
# benchmark's SVG chart. `--quick` uses tiny sizes (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
exec target/release/perf-suite --no-build "$@"
