#!/usr/bin/env bash
# The main job: build strata, then take the example images through the local default store
# (/var/lib/strata as root, ~/.local/share/strata otherwise): import, list, history, save,
# and load back.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
strata=./target/release/strata

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A busybox rootfs, from Debian's busybox-static (installed when missing and we are root).
if [ ! -x /bin/busybox ] && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq busybox-static >/dev/null || true
fi
examples/rootfs/make-busybox-rootfs.sh "$work/rootfs"
tar -C "$work/rootfs" -czf "$work/busybox-rootfs.tar.gz" .

echo '$ strata import -c "CMD [\"/bin/sh\"]" busybox-rootfs.tar.gz example/busybox:1.0'
$strata import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' "$work/busybox-rootfs.tar.gz" example/busybox:1.0
echo '$ strata import --platform wasi/wasm -c "ENTRYPOINT [\"/hello.wasm\"]" - example/hello-wasm:1.0'
examples/rootfs/make-wasm-rootfs.sh "$work/wasm"
tar -C "$work/wasm" -cf - . | $strata import --platform wasi/wasm -c 'ENTRYPOINT ["/hello.wasm"]' - example/hello-wasm:1.0
echo '$ strata images'
$strata images
echo '$ strata history example/busybox:1.0'
$strata history example/busybox:1.0
echo '$ strata inspect -f "{{.Os}}/{{.Architecture}}" example/hello-wasm:1.0'
$strata inspect -f '{{.Os}}/{{.Architecture}}' example/hello-wasm:1.0
echo '$ strata save -o examples.tar example/busybox:1.0 example/hello-wasm:1.0 && strata load -i examples.tar'
$strata save -o "$work/examples.tar" example/busybox:1.0 example/hello-wasm:1.0
$strata load -i "$work/examples.tar"
echo '$ strata system df'
$strata system df
