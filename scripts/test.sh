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
echo "==> cargo build (the sou binary the end-to-end tests start)"
cargo build --workspace --locked
echo "==> cargo test"
cargo test --workspace --locked --no-fail-fast "$@"
