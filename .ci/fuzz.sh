#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the stable toolchain
# (the flags cargo-fuzz passes with `--sanitizer none`) and runs each for FUZZ_SECONDS
# (default 20) on its checked-in corpus. A crash fails the run and leaves its input in
# target/fuzz/artifacts/<target>/. Usage: bash .ci/fuzz.sh [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-20}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(token_parser authorize_request jwt)

export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# With --target, RUSTFLAGS reach the fuzzed code only, not build scripts and proc macros.
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --locked --release --manifest-path fuzz/Cargo.toml --target-dir target/fuzz \
  --target "$host" --bins

for target in "${targets[@]}"; do
  mkdir -p "target/fuzz/artifacts/$target" "target/fuzz/corpus/$target"
  # New inputs go to target/fuzz/corpus; the checked-in corpus is read only.
  "target/fuzz/$host/release/$target" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="target/fuzz/artifacts/$target/" \
    "target/fuzz/corpus/$target" "fuzz/corpus/$target" 2>&1 | tail -n 12
  echo "fuzz: $target ran ${seconds}s without a crash"
done
