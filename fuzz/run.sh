#!/usr/bin/env bash
# Build the fuzz targets on stable Rust with libFuzzer's coverage instrumentation (what
# cargo-fuzz passes, without its nightly-only sanitizer flags) and run them.
#   fuzz/run.sh build
#   fuzz/run.sh TARGET [libFuzzer args...]      e.g. fuzz/run.sh gguf -max_total_time=30
# Seeds come from tests/fixtures (fuzz/seeds.py); new inputs go to fuzz/corpus/TARGET (not in
# git); crashes are written to fuzz/artifacts/TARGET/ — each one becomes a regression test.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CANDLEWICK_FUZZ_TARGET:-$HOME/.cache/candlewick/fuzz-target}"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
host="$(rustc -vV | sed -n 's/^host: //p')"
# --target keeps the flags off build scripts and proc macros (as cargo-fuzz does)
cargo build --release --bins --target "$host"
[ "${1:-build}" = build ] && exit 0
if [ "$1" = ci ]; then
  # fuzz/run.sh ci SECONDS TARGET...: each target seeded, for SECONDS; any crash fails
  secs="$2"; shift 2
  for t in "$@"; do
    mkdir -p "artifacts/$t"
    d="$(mktemp -d)"; python3 seeds.py "$t" "$d"
    echo "fuzz $t: ${secs}s from $(ls "$d" | wc -l) seeds"
    "$CARGO_TARGET_DIR/$host/release/$t" "$d" -seed=1 -max_total_time="$secs" -artifact_prefix="artifacts/$t/" \
      -rss_limit_mb=3072 -malloc_limit_mb=2048 -timeout=20 -max_len=1048576 -print_final_stats=1 2>"$d.log" \
      || { tail -40 "$d.log"; echo "fuzz $t found a crash: fuzz/artifacts/$t/"; exit 1; }
    grep -E "stat::number_of_executed_units" "$d.log" || true
    rm -rf "$d" "$d.log"
  done
  exit 0
fi
t="$1"; shift
mkdir -p "corpus/$t" "artifacts/$t"
python3 seeds.py "$t" "corpus/$t"
exec "$CARGO_TARGET_DIR/$host/release/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
  -rss_limit_mb=3072 -malloc_limit_mb=2048 -timeout=20 -max_len=1048576 "$@"
