#!/usr/bin/env bash
# README command 1: set up this host, build ferrovs, and run it for a few seconds on the built-in
# demo (demo/ferrovs.toml: generated traffic -> ferrovs -> a sink, all DPDK vdevs, no NIC needed).
#
#   scripts/demo.sh [SECONDS]        (default 5; FLOWS=1000 sets the number of flows)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-5}
flows=${FLOWS:-1000}

bash scripts/setup.sh
echo "demo: building ferrovs (release)"
cargo build --release --quiet
mkdir -p demo/out
target/release/ferrovs gen-pcap --flows "$flows" -o demo/out/traffic.pcap
target/release/ferrovs check --config demo/ferrovs.toml
echo "demo: running ferrovs for $seconds s"
exec target/release/ferrovs run --config demo/ferrovs.toml --duration "$seconds"
