#!/usr/bin/env bash
# Installs what is missing, builds everything, and runs every test:
# formatting, lints, unit and property tests, and the end-to-end tests that
# start real `sou` processes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_system_deps

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> the consensus engine and the ledger stay pure (no async runtime, sockets or clocks)"
if cargo tree -p sou-consensus -e normal --locked | grep -E "tokio|rocksdb|libp2p|mio"; then
  echo "error: sou-consensus depends on an async runtime, a database or a network stack" >&2
  exit 1
fi
if grep -rnE "SystemTime|Instant::now|std::net|tokio" consensus/src; then
  echo "error: sou-consensus reads a clock or touches the network" >&2
  exit 1
fi
if cargo tree -p sou-ledger -e normal --locked | grep -E "tokio|libp2p"; then
  echo "error: sou-ledger depends on an async runtime or a network stack" >&2
  exit 1
fi
echo "==> cargo build (the sou binary the end-to-end tests start)"
cargo build --workspace --locked
echo "==> cargo test"
cargo test --workspace --locked --no-fail-fast "$@"
