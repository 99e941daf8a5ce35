#!/usr/bin/env bash
# Installs what is missing, builds `sou`, and runs a local 4-validator
# testnet in .testnet/ with funded dev accounts until Ctrl-C. An existing testnet is
# resumed; pass --reset to start afresh. Other arguments go to `sou testnet`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_system_deps

cargo build --release -p sou-node
exec target/release/sou testnet --dir .testnet "$@"
