#!/usr/bin/env bash
# Installs what is missing, builds `sou` in release, starts a fresh local
# testnet in .bench-testnet/ (VALIDATORS, default 4), runs `sou bench`
# against every node (arguments are passed on, e.g. --rate 5000,10000,15000
# --duration 20 --out r.json; the chart goes next to r.json), then stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_system_deps

cargo build --release -p sou-node
sou=target/release/sou
dir=.bench-testnet
validators="${VALIDATORS:-4}"
rm -rf "$dir"
"$sou" testnet --dir "$dir" --reset --validators "$validators" --rpc-port 18545 --metrics-port 19615 --p2p-port 28656 > "$dir.log" 2>&1 &
testnet=$!
trap 'kill -INT $testnet 2>/dev/null; wait $testnet 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  [ -f "$dir/testnet.json" ] && break
  sleep 0.1
done
[ -f "$dir/testnet.json" ] || { echo "the testnet did not start; see $dir.log" >&2; exit 1; }
rpcs=""
metrics=""
for i in $(seq 0 $((validators - 1))); do
  rpcs="${rpcs:+$rpcs,}http://127.0.0.1:$((18545 + i))"
  metrics="${metrics:+$metrics,}127.0.0.1:$((19615 + i))"
done
"$sou" bench --rpc "$rpcs" --metrics "$metrics" --funder "$dir/accounts/account-0.json" "$@"
