#!/usr/bin/env bash
# README command 2 (and what CI runs): set up this host (with Open vSwitch, the reference switch
# for the differential tests), then check formatting and lints and run every test: unit and
# property tests, the safe DPDK layer against a real EAL, end-to-end tests that run the ferrovs
# binary on DPDK vdevs and compare output pcaps byte for byte, the differential tests against
# OVS-DPDK, two QEMU guests pinging and streaming TCP through ferrovs over vhost-user
# (scripts/vm-test.sh; skipped only where QEMU cannot run at all), and a short run of each fuzz
# target (FUZZ_SECONDS each, default 20; 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --with-ovs --with-qemu
echo "test: cargo fmt --check"
cargo fmt --all -- --check
echo "test: cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "test: cargo test (concurrency stress tests run FERROVS_STRESS_SECS each, default 30)"
export FERROVS_STRESS_SECS=${FERROVS_STRESS_SECS:-30}
cargo test --workspace
echo "test: two QEMU guests through ferrovs over vhost-user (scripts/vm-test.sh)"
vm_rc=0
bash scripts/vm-test.sh || vm_rc=$?
if [ "$vm_rc" -eq 77 ]; then
  echo "test: vm-test skipped: QEMU cannot run on this host (see its SKIP line above)"
elif [ "$vm_rc" -ne 0 ]; then
  echo "test: vm-test failed (exit $vm_rc)" >&2
  exit "$vm_rc"
fi
echo "test: loom model checking of the flow cache's version protocol"
RUSTFLAGS="--cfg loom" cargo test -p ferrovs-switch --release --test loom_cuckoo --target-dir target/loom
if [ "${FUZZ_SECONDS:-20}" -gt 0 ]; then
  echo "test: fuzz smoke (${FUZZ_SECONDS:-20}s per target)"
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi
echo "test: all passed"
