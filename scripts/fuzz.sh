#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/fuzz_targets) for SECONDS each (default 60), with AddressSanitizer.
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]      targets: packet_parser flow_syntax (default: both)
#
# cargo fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on the stable toolchain this
# project uses. Crashes land in fuzz/artifacts/TARGET/ and fail the script.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(packet_parser flow_syntax)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  echo "fuzz: $t for ${seconds}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 \
    | grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb|.*(panicked|ERROR|SUMMARY).*)" || true
  if compgen -G "artifacts/$t/crash-*" >/dev/null; then
    echo "fuzz: $t crashed: see fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "fuzz: no crash"
