#!/usr/bin/env bash
# Builds everything and starts an all-in-one cluster (control plane + built-in agent) in the
# foreground. Installs edgectl and edged into ~/.cargo/bin so a second terminal can use them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
echo "==> building the example components (wasm32-wasip2)"
scripts/build-modules.sh
echo "==> installing edgectl and edged (release build; the first one takes a few minutes)"
cargo install --locked --path . --target-dir "$root/target" --root "${CARGO_HOME:-$HOME/.cargo}" --force
echo "==> starting edged server (Ctrl-C to stop; state in ${EDGE_DATA_DIR:-$HOME/.edge/server})"
exec "${CARGO_HOME:-$HOME/.cargo}/bin/edged" server "$@"
