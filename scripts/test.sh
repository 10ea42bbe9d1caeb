#!/usr/bin/env bash
# The project's whole test suite: what README tells a newcomer to run and
# what .ci/run runs on a clean clone. Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

# Nothing in the tests may probe the cloud metadata address.
export AWS_EC2_METADATA_DISABLED=true

step() { printf '\n=== %s\n' "$*"; }

step "dynalite (local DynamoDB for the tests)"
scripts/dynalite.sh install

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo deny: licenses, bans, sources (deny.toml)"
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
cargo deny --log-level error check licenses bans sources
if cargo deny --log-level error fetch db >/dev/null 2>&1; then
    cargo deny --log-level error check advisories
else
    echo "advisories: NOT checked: RustSec's advisory database (a git repository on github.com) cannot be fetched from this machine"
fi

step "tests"
test_log=$(mktemp)
# The C and Java tests load libawp_client.so, which a workspace test build
# does not make (there the crate is built as a dependency, rlib only).
cargo build -p awp-client --lib --locked --quiet
cargo test --workspace --locked 2>&1 | tee "$test_log"

step "agent library: LTO build, at most 2 MiB (docs/client.md#size)"
cargo rustc --profile agent -p awp-client --lib --crate-type cdylib --locked --quiet
agent_lib=target/agent/libawp_client.so
agent_bytes=$(stat -c %s "$agent_lib")
echo "$agent_lib: $agent_bytes bytes"
if [ "$agent_bytes" -gt 2097152 ]; then
    echo "agent library: FAILED ($agent_bytes bytes, above 2 MiB)"
    exit 1
fi

step "benches compile"
cargo bench -p awp-benches --locked --no-run

step "scale-out: two gateways behind HAProxy, one killed, then a rolling restart"
scale_log=$(mktemp)
if scripts/scale-out.sh >"$scale_log" 2>&1; then
    grep -E '^run [12]:|verify:' "$scale_log"
else
    tail -n 60 "$scale_log"
    echo "scale-out: FAILED"
    exit 1
fi
rm -f "$scale_log"

step "fuzz targets: build and a short run each"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in decode_frame decode_batch session client_session; do
    log=$(mktemp)
    if fuzz/run.sh "$target" "${FUZZ_SECONDS:-15}" >"$log" 2>&1; then
        echo "fuzz $target: $(grep -E '^Done' "$log")"
    else
        tail -n 60 "$log"
        echo "fuzz $target: FAILED (crash input in fuzz/artifacts/$target/)"
        exit 1
    fi
    rm -f "$log"
done

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, i }' "$test_log"
rm -f "$test_log"
