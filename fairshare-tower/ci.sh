#!/usr/bin/env bash
# CI for fairshare-tower (and the core's `metrics` feature it enables). Run from the repo
# root: `bash fairshare-tower/ci.sh`. Needs nothing beyond a Rust toolchain and crates.io:
# every test serves and requests over 127.0.0.1.
set -euo pipefail

start=$(date +%s)
step() { echo "== fairshare-tower ci: $*"; }

# The flood test holds about 1,000 client and 1,000 server sockets at once.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

export RUSTFLAGS="${RUSTFLAGS:--D warnings}"
export RUSTDOCFLAGS="${RUSTDOCFLAGS:--D warnings}"

step "fmt"
cargo fmt -p fairshare-tower --check

step "clippy (all features, then none)"
cargo clippy -p fairshare-tower --all-targets --all-features -- -D warnings
cargo clippy -p fairshare-tower --all-targets -- -D warnings

step "core: metrics feature (clippy, its unit test and doctests)"
cargo clippy -p fairshare --lib --features metrics -- -D warnings
cargo test -p fairshare --features metrics --lib metrics::
cargo test -p fairshare --features metrics --doc metrics

step "tests (all features: unit, HTTP, service, metrics, doctests)"
cargo test -p fairshare-tower --all-features

step "tests without features"
cargo test -p fairshare-tower --lib --tests

step "docs"
cargo doc -p fairshare-tower --no-deps --all-features

step "example http_service (self-test: serves on 127.0.0.1:0, replays the peak, exits)"
cargo run -p fairshare-tower --example http_service --features axum,metrics

step "bench compiles"
cargo bench -p fairshare-tower --no-run

echo "== fairshare-tower ci: ok in $(( $(date +%s) - start )) s"
