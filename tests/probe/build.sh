#!/usr/bin/env bash
# Build the test probe for wasm32-wasip1 (core module) and wasm32-wasip2 (component) in
# release mode and copy the results to out/ (tests/suite/common builds it through this script).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

targets=(wasm32-wasip1 wasm32-wasip2)
if command -v rustup >/dev/null 2>&1; then
    installed="$(rustup target list --installed)"
    for t in "${targets[@]}"; do
        grep -qx "$t" <<<"$installed" || rustup target add "$t"
    done
fi

mkdir -p out
for t in "${targets[@]}"; do
    cargo build --release --locked --target "$t" --target-dir "$here/target" \
        --manifest-path "$here/Cargo.toml"
done
cp target/wasm32-wasip1/release/probe.wasm out/probe-p1.wasm
cp target/wasm32-wasip2/release/probe.wasm out/probe-p2.wasm
echo "$here/out/probe-p1.wasm"
echo "$here/out/probe-p2.wasm"
