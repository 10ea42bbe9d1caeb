#!/usr/bin/env bash
# Fuzz one target for a bounded time, seeding its corpus from the test vectors.
#
#   fuzz/run.sh decode_frame 60     # target, seconds (default 60)
#   fuzz/run.sh decode_batch 300
#   fuzz/run.sh session 300          # the gateway session state machine
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer, coverage passes);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. Needs
# `cargo install cargo-fuzz` once. Crashes land in fuzz/artifacts/TARGET/.
set -euo pipefail
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
python3 "$here/seed_corpus.py" "$here/../protocol/tests/vectors.json" "$here/corpus"
cd "$here/.."
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10
