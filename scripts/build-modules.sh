#!/usr/bin/env bash
# Builds the guest workloads in modules/ for wasm32-wasip2 (components) and hello-p1 for
# wasm32-wasip1 (a preview1 core module), and copies them into examples/components/ (used by
# the runtime tests, benchmarks and examples).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODULES_DIR="$ROOT/modules"
OUT_DIR="$ROOT/examples/components"
TARGET=wasm32-wasip2
P1_TARGET=wasm32-wasip1
# Commands (bins) and the HTTP handler (a cdylib: its file name uses underscores).
COMPONENTS=(hello ticker fail membomb spin recursion flood escape http-hello beacon http-relay)
P1_MODULES=(hello-p1)

# Idempotent: a no-op when the targets are already installed.
rustup target add "$TARGET" "$P1_TARGET"

P1_EXCLUDES=()
for name in "${P1_MODULES[@]}"; do P1_EXCLUDES+=(--exclude "$name"); done
(cd "$MODULES_DIR" && cargo build --release --target "$TARGET" --workspace "${P1_EXCLUDES[@]}")
for name in "${P1_MODULES[@]}"; do
    (cd "$MODULES_DIR" && cargo build --release --target "$P1_TARGET" -p "$name")
done

mkdir -p "$OUT_DIR"
copy() { # <target> <name>
    local target="$1" name="$2" src
    src="$MODULES_DIR/target/$target/release/$name.wasm"
    if [[ ! -f "$src" ]]; then
        # cdylib outputs use underscores in their file names.
        src="$MODULES_DIR/target/$target/release/${name//-/_}.wasm"
    fi
    if [[ ! -f "$src" ]]; then
        echo "build-modules: expected $src after the build, but it is missing" >&2
        exit 1
    fi
    cp "$src" "$OUT_DIR/$name.wasm"
    echo "build-modules: $OUT_DIR/$name.wasm ($(wc -c <"$src") bytes)"
}
for name in "${COMPONENTS[@]}"; do copy "$TARGET" "$name"; done
for name in "${P1_MODULES[@]}"; do copy "$P1_TARGET" "$name"; done
