#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time (FUZZ_SECONDS each, default 45),
# starting from the committed seeds in fuzz/corpus/<target>/, and fails on the first crash.
# Built with debug assertions (so integer overflow panics too). Prints libFuzzer's final line
# (executions, coverage, features) per target. Run from the repository root.
set -euo pipefail

secs="${FUZZ_SECONDS:-45}"
root="$(pwd)"

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz > /dev/null; then
  cargo install cargo-fuzz --locked
fi

cd "$root/fuzz"
start=$(date +%s)
cargo +nightly fuzz build -a
echo "fuzz: build took $(( $(date +%s) - start )) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
for target in $(cargo +nightly fuzz list); do
  mkdir -p "$work/$target" "corpus/$target"
  log="$work/$target.log"
  # The first directory collects new inputs, so the committed seeds stay as they are.
  if cargo +nightly fuzz run -a "$target" "$work/$target" "corpus/$target" -- \
      -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 > "$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed=1
  fi
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)"
  execs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)"
  echo "fuzz: $target $status executions=${execs:-?} ${done_line#*DONE}"
  if [ "$status" = CRASH ]; then
    tail -60 "$log"
    ls "artifacts/$target" 2>/dev/null | sed "s|^|fuzz: crash input: fuzz/artifacts/$target/|" || true
  fi
done
echo "fuzz: total $(( $(date +%s) - start )) s"
exit "$failed"
