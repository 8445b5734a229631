#!/usr/bin/env bash
# Build the stack's front end for wasm32-wasip2 (a component exporting
# wasi:http/incoming-handler) in release mode and copy it to out/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
fi
mkdir -p out
cargo build --release --locked --target wasm32-wasip2 --target-dir "$here/target" \
    --manifest-path "$here/Cargo.toml"
cp target/wasm32-wasip2/release/stack_front.wasm out/front.wasm
echo "$here/out/front.wasm"
