#!/usr/bin/env bash
# What the tests need, on a Debian machine as root: the Debian packages they run, the WASI
# Rust targets, and the official WASI test suite beside the repository. Safe to run again: it
# installs only what is missing and says nothing when nothing is. The README's test command
# (which .ci/run runs) is this script, then the tests with every prerequisite required:
#
#   ./tests/setup.sh && STRATA_TEST_REQUIRE_TOOLS=1 cargo test --workspace --locked
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "tests/setup.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: it installs Debian packages, and the native backend's \
tests (namespaces, mounts, switching users) need root. Plain 'cargo test --workspace' runs \
as any user and notes each test it skips."

# What the tests run, by package:
#   gcc, libc6-dev         the linker, and the C in ring, zstd-sys and wasmtime
#   busybox-static         the native tests' rootfs (examples/rootfs/make-busybox-rootfs.sh)
#   skopeo, umoci          interop: they read what strata writes and write what it reads
#   podman, runc           build: podman runs what strata built
#   docker-registry, openssl, apache2-utils (htpasswd), python3 (tests/suite/common/token_proxy.py)
#                          registry: a local registry with TLS, basic and bearer-token auth
#   util-linux             setpriv, unshare, mount: unprivileged users and user namespaces
#   passwd, uidmap         useradd and newuidmap/newgidmap: rootless native containers
#   bsdutils               script: a real terminal for `run -it`
#   attr                   getfattr: the rootless store's overlay xattrs
#   zstd, gzip, tar        layer fixtures
#   tini                   tini-static: `run --init`
#   nftables, iproute2     nft and ip: published ports and the network tests' namespaces
#   procps                 pgrep: the network tests find monitors to kill
#   passt, slirp4netns     pasta, and its fallback: rootless containers on `bridge`
#   ca-certificates        TLS to crates.io and Rust's servers; the bundle the registry client loads
#   curl                   raw requests to the Engine API's socket (and to published ports)
packages=(gcc libc6-dev busybox-static skopeo umoci podman runc docker-registry openssl
    apache2-utils python3 util-linux passwd uidmap bsdutils attr zstd gzip tar ca-certificates
    tini nftables iproute2 procps passt slirp4netns curl)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "tests/setup.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Quiet unless it fails (debconf talks on stderr even when all goes well).
    log=$( { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } 2>&1 ) \
        || { echo "$log" >&2; die "installing ${missing[*]} failed"; }
fi

# The Wasm guests in examples/ are built by the tests for both WASI targets.
command -v rustup >/dev/null || die "needs rustup and a Rust toolchain (rust-version in Cargo.toml)"
installed=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-wasip2; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t" >/dev/null
done

# tests/suite/wasi_testsuite.rs runs the official WASI preview 1 suite, which sits beside the
# repository (as CI lays it out); its README says which commit it is.
[ -f ../shared/wasi-testsuite/README.md ] || die "the WASI test suite is not at \
$(cd .. && pwd)/shared/wasi-testsuite (WebAssembly/wasi-testsuite, branch prod/testsuite-base, \
its wasm32-wasip1 groups)"


# Rootless networking (pasta) opens /dev/net/tun as the user: Debian's udev makes it 0666, some
# machines (this one) leave it 0600.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
    chmod 0666 /dev/net/tun
fi

# The Engine API tests drive the stock docker CLI (these machines have 28.x; Debian's docker.io
# brings a 20.10 client, installed without starting its daemon) and the Python SDK.
if ! command -v docker >/dev/null; then
    echo "tests/setup.sh: installing docker.io (for its docker client)" >&2
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    log=$( { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends docker.io; } 2>&1 ) || { rm -f /usr/sbin/policy-rc.d; echo "$log" >&2; \
        die "installing docker.io failed"; }
    rm -f /usr/sbin/policy-rc.d
fi
if ! python3 -c 'import docker' 2>/dev/null; then
    echo "tests/setup.sh: installing the Python docker SDK" >&2
    python3 -m pip install -q 'docker==7.1.0' 2>/dev/null \
        || python3 -m pip install -q --break-system-packages 'docker==7.1.0' \
        || die "installing the Python docker SDK failed"
fi
