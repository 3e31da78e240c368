#!/usr/bin/env bash
# The whole test suite: guest components, formatting, lints, unit, component and end-to-end tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
echo "==> building the guest components"
scripts/build-modules.sh
rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> edgectl builds without the daemon (no wasmtime, no redb)"
cargo build --locked --no-default-features --bin edgectl
echo "==> cargo test"
cargo test --workspace --locked
