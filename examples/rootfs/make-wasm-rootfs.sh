#!/usr/bin/env bash
# Make the root filesystem of a tiny WASI image in DIR: one Wasm module (hello.wasm,
# assembled from hello.wat with `wat2wasm hello.wat -o hello.wasm`) plus a data file.
set -euo pipefail
dir=${1:?usage: make-wasm-rootfs.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir/data"
cp "$here/hello.wasm" "$dir/hello.wasm"
echo "hello from a layered wasm image" > "$dir/data/greeting.txt"
