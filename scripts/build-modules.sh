#!/usr/bin/env bash
# Builds the guest workloads in modules/ for wasm32-wasip2 and copies the resulting
# components into examples/components/ (used by the runtime tests and the examples).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODULES_DIR="$ROOT/modules"
OUT_DIR="$ROOT/examples/components"
TARGET=wasm32-wasip2
COMPONENTS=(hello ticker fail membomb spin)

# Idempotent: a no-op when the target is already installed.
rustup target add "$TARGET"

(cd "$MODULES_DIR" && cargo build --release --target "$TARGET")

mkdir -p "$OUT_DIR"
for name in "${COMPONENTS[@]}"; do
    src="$MODULES_DIR/target/$TARGET/release/$name.wasm"
    if [[ ! -f "$src" ]]; then
        echo "build-modules: expected $src after the build, but it is missing" >&2
        exit 1
    fi
    cp "$src" "$OUT_DIR/$name.wasm"
    echo "build-modules: $OUT_DIR/$name.wasm ($(wc -c <"$src") bytes)"
done
