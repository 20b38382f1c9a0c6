#!/usr/bin/env bash
# README command 2 (and what CI runs): set up this host, then check formatting and lints and run
# every test: unit and property tests, the safe DPDK layer against a real EAL, and the end-to-end
# tests that run the ferrovs binary on DPDK vdevs and compare output pcaps byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "test: cargo fmt --check"
cargo fmt --all -- --check
echo "test: cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "test: cargo test"
cargo test --workspace
echo "test: all passed"
