#!/usr/bin/env bash
# Registry benchmark: push and pull of a ~100 MiB image (one layer holding one incompressible
# 100 MiB file, gzip) against a local plain-HTTP docker-registry started here, Strata vs
# `skopeo copy`, in one run, printing medians and ratios (target: strata/skopeo <= 1).
#
#   push: `strata push` from the store vs `skopeo copy oci:<store>:<ref> docker://…`; each
#         iteration pushes into a freshly started registry with empty storage, so every blob
#         is really uploaded (no HEAD hit, no cross-repository mount).
#   pull: `strata pull` into a fresh store (download, verify, unpack the layer) vs
#         `skopeo copy docker://… oci:<fresh dir>:x` (download and verify only); for context
#         also skopeo + `umoci unpack` when umoci is installed.
#
# Needs docker-registry, skopeo, curl, python3. Work files go under a mktemp directory in
# /var/tmp, removed afterwards (KEEP=1 keeps it). RUNS (default 5) sets the iterations.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
runs="${RUNS:-5}"

for tool in docker-registry skopeo curl python3; do
    command -v "$tool" >/dev/null || { echo "registry.sh: $tool is required" >&2; exit 1; }
done

echo "== building strata (release)" >&2
cargo build --release --locked -p strata >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
strata="$target_dir/release/strata"

work="$(mktemp -d /var/tmp/strata-registry-bench.XXXXXX)"
reg_pid=""
stop_registry() {
    if [ -n "$reg_pid" ]; then
        kill "$reg_pid" 2>/dev/null || true
        wait "$reg_pid" 2>/dev/null || true
        reg_pid=""
    fi
}
cleanup() {
    stop_registry
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Credentials and skopeo's blob-info cache stay out of the real home.
unset REGISTRY_AUTH_FILE
export DOCKER_CONFIG="$work/docker"
export XDG_RUNTIME_DIR="$work/xdg-run"
export HOME="$work/home"
mkdir -p "$DOCKER_CONFIG" "$XDG_RUNTIME_DIR" "$HOME"
chmod 700 "$XDG_RUNTIME_DIR"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
host="127.0.0.1:$port"

# start_registry DIR: a registry on $port serving from DIR (created if new).
start_registry() {
    local dir="$1"
    mkdir -p "$dir/data"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $host
  secret: strata-bench
EOF
    # The registry reads REGISTRY_* variables as configuration: start it without them.
    env $(env | sed -n 's/^\(REGISTRY_[^=]*\)=.*/-u \1/p') docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    reg_pid=$!
    for _ in $(seq 200); do
        curl -sf "http://$host/v2/" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "registry did not start:" >&2
    cat "$dir/log" >&2
    exit 1
}

now() { date +%s.%N; }
# timed FILE CMD...: run CMD (output discarded), append its wall time in seconds to FILE.
timed() {
    local file="$1"
    shift
    local t0 t1
    t0="$(now)"
    "$@" >/dev/null 2>"$work/last.err" || { echo "failed: $*" >&2; cat "$work/last.err" >&2; exit 1; }
    t1="$(now)"
    python3 -c "print(f'{$t1 - $t0:.3f}')" >>"$file"
}
median() { sort -n "$1" | python3 -c 'import sys,statistics; print(f"{statistics.median(float(l) for l in sys.stdin):.3f}")'; }

# --- the image -----------------------------------------------------------------------------
echo "== making the 100 MiB image" >&2
mkdir -p "$work/tree"
head -c 100M /dev/urandom >"$work/tree/big"
tar -C "$work/tree" -cf "$work/big.tar" .
src="$work/src-store"
"$strata" --root "$src" import "$work/big.tar" bench/big:1 >/dev/null
rm -f "$work/big.tar"
src_ref="docker.io/bench/big:1"
layer_size="$(python3 -c "
import json,sys
idx=json.load(open('$src/index.json'))
m=[d for d in idx['manifests'] if d['annotations']['org.opencontainers.image.ref.name']=='$src_ref'][0]
man=json.load(open('$src/blobs/sha256/'+m['digest'].split(':')[1]))
print(sum(l['size'] for l in man['layers']))")"
echo "   layer blob: $layer_size bytes (gzip)" >&2

results="$work/results"
mkdir -p "$results"

# --- push ------------------------------------------------------------------------------------
# Warm-up (binaries and the source blobs in the page cache), not timed.
start_registry "$work/reg-warm"
"$strata" --root "$src" push -q bench/big:1 "$host/warm/strata:1" >/dev/null
skopeo copy -q --dest-tls-verify=false "oci:$src:$src_ref" "docker://$host/warm/skopeo:1" >/dev/null
stop_registry

for i in $(seq "$runs"); do
    echo "== push $i/$runs" >&2
    start_registry "$work/reg-push-strata-$i"
    timed "$results/push-strata" "$strata" --root "$src" push -q bench/big:1 "$host/bench/strata$i:1"
    stop_registry
    rm -rf "$work/reg-push-strata-$i"
    start_registry "$work/reg-push-skopeo-$i"
    timed "$results/push-skopeo" skopeo copy -q --dest-tls-verify=false "oci:$src:$src_ref" "docker://$host/bench/skopeo$i:1"
    stop_registry
    rm -rf "$work/reg-push-skopeo-$i"
done

# --- pull ------------------------------------------------------------------------------------
start_registry "$work/reg-pull"
"$strata" --root "$src" push -q bench/big:1 "$host/bench/big:1" >/dev/null
# Warm-up: the registry's blob files in the page cache, not timed.
"$strata" --root "$work/pull-warm" pull -q "$host/bench/big:1" >/dev/null
skopeo copy -q --src-tls-verify=false "docker://$host/bench/big:1" "oci:$work/pull-warm-skopeo:x" >/dev/null
rm -rf "$work/pull-warm" "$work/pull-warm-skopeo"
have_umoci=0
command -v umoci >/dev/null && have_umoci=1
umoci_flags=()
[ "$(id -u)" = 0 ] || umoci_flags=(--rootless)

skopeo_umoci() { # skopeo_umoci LAYOUT BUNDLE
    skopeo copy -q --src-tls-verify=false "docker://$host/bench/big:1" "oci:$1:x" &&
        umoci unpack "${umoci_flags[@]}" --image "$1:x" "$2"
}

for i in $(seq "$runs"); do
    echo "== pull $i/$runs" >&2
    timed "$results/pull-strata" "$strata" --root "$work/pull-strata-$i" pull -q "$host/bench/big:1"
    rm -rf "$work/pull-strata-$i"
    timed "$results/pull-skopeo" skopeo copy -q --src-tls-verify=false "docker://$host/bench/big:1" "oci:$work/pull-skopeo-$i:x"
    rm -rf "$work/pull-skopeo-$i"
    if [ "$have_umoci" = 1 ]; then
        timed "$results/pull-skopeo-umoci" skopeo_umoci "$work/pull-su-$i" "$work/pull-su-bundle-$i"
        rm -rf "$work/pull-su-$i" "$work/pull-su-bundle-$i"
    fi
done
stop_registry

# --- report ----------------------------------------------------------------------------------
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
ps="$(median "$results/push-strata")"
pk="$(median "$results/push-skopeo")"
ls="$(median "$results/pull-strata")"
lk="$(median "$results/pull-skopeo")"
mib="$(python3 -c "print(f'{$layer_size / 1048576:.1f}')")"
echo
echo "registry benchmark: one ${mib} MiB gzip layer, local docker-registry over HTTP, median of $runs"
printf '%-34s %9s %9s %8s\n' "" "strata" "skopeo" "ratio"
printf '%-34s %8ss %8ss %8s\n' "push (fresh registry)" "$ps" "$pk" "$(ratio "$ps" "$pk")"
printf '%-34s %8ss %8ss %8s\n' "pull (fresh store)" "$ls" "$lk" "$(ratio "$ls" "$lk")"
if [ "$have_umoci" = 1 ]; then
    lu="$(median "$results/pull-skopeo-umoci")"
    printf '%-34s %8ss %8ss %8s\n' "pull+unpack (skopeo + umoci)" "$ls" "$lu" "$(ratio "$ls" "$lu")"
fi
echo "(ratio = strata / peer; target <= 1.00. strata pull also verifies and unpacks the layer;"
echo " skopeo copy to an OCI layout only stores the blob.)"
for f in push-strata push-skopeo pull-strata pull-skopeo pull-skopeo-umoci; do
    [ -f "$results/$f" ] && echo "  $f: $(tr '\n' ' ' <"$results/$f")"
done
