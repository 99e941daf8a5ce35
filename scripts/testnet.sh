#!/usr/bin/env bash
# Installs what is missing, builds `sou`, and creates a local dev chain with
# funded dev accounts in .testnet/ (use --reset to start afresh).
# Networking and block production come with later releases: for now this
# prints the chain, its genesis state and the dev accounts' keys.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_system_deps

dir=".testnet"
if [ "${1:-}" = "--reset" ]; then rm -rf "$dir"; shift; fi
cargo build --release -p sou-node
sou=target/release/sou
if [ -f "$dir/node0/config.toml" ]; then
  echo "A dev chain already exists in $dir/node0 (run with --reset to start afresh)."
  exit 0
fi
"$sou" init --home "$dir/node0" "$@"
echo
echo "Node home: $dir/node0. Block production and networking arrive in the next releases."
