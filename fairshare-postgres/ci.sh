#!/usr/bin/env bash
# CI for the fairshare-postgres crate. Run from the repository root; CI runs it as root with
# CI=true. Installs the PostgreSQL server if this machine lacks it (the tests, doctests, the
# example and the benches start throwaway servers from /usr/lib/postgresql/<version>/bin;
# as root they run them as the `postgres` system user, see src/testing.rs), then runs the
# crate's format check, clippy, tests (unit, integration, doctests), docs, the fleet replay
# example (release) and compiles the benches.
set -euo pipefail

started=$(date +%s)

if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin;" \
            "install the Debian package postgresql (apt-get install postgresql) as root" >&2
        exit 1
    fi
    echo "installing the PostgreSQL server (Debian package postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends postgresql
fi

cargo fmt -p fairshare-postgres -- --check
cargo clippy -p fairshare-postgres --all-targets --all-features -- -D warnings
cargo test -p fairshare-postgres --all-features
RUSTDOCFLAGS="${RUSTDOCFLAGS:--D warnings}" cargo doc -p fairshare-postgres --no-deps
cargo bench -p fairshare-postgres --no-run
cargo run --release -p fairshare-postgres --example fleet_replay

echo "fairshare-postgres/ci.sh: done in $(($(date +%s) - started)) s"
