#!/usr/bin/env bash
# Engine API benchmark (issue 19): the stock docker CLI against `strata system service` and
# against Debian's dockerd (started here on a private socket, data root and exec root, with
# no bridge and no iptables rules), on the same busybox image, in one run:
#
#   run      `docker run --rm bb:1 true`, median of RUNS (20) runs     target: <= 0.3x dockerd
#   ps       `docker ps -a`, median of RUNS runs                       target: <= 0.5x dockerd
#   ps-api   GET /containers/json?all=1 alone (curl's time_total, without the docker
#            CLI's own start-up, which both servers pay alike), median of RUNS
#
# Everything runs in a network namespace made for the bench (the script re-executes itself
# under `unshare -n`). Needs root; installs docker.io and busybox-static when missing.
# STRATA=path skips the build; KEEP=1 keeps the work directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
[ "$(id -u)" = 0 ] || { echo "engine-api.sh: must run as root" >&2; exit 1; }

if [ -z "${STRATA_API_BENCH_INNER:-}" ]; then
    if ! command -v dockerd >/dev/null || ! command -v busybox >/dev/null; then
        echo "== installing docker.io, busybox-static (their services not started)" >&2
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io busybox-static >&2 || true
        rm -f /usr/sbin/policy-rc.d
    fi
    target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    if [ -z "${STRATA:-}" ]; then
        echo "== building strata" >&2
        cargo build --release --locked -p strata >&2
    fi
    export STRATA="${STRATA:-$target_dir/release/strata}"
    export STRATA_API_BENCH_INNER=1
    exec unshare -n "$0" "$@"
fi

ip link set lo up
RUNS=${RUNS:-20}
work=$(mktemp -d)
cleanup() {
    [ -n "${api_pid:-}" ] && kill "$api_pid" 2>/dev/null || true
    if [ -n "${dockerd_pid:-}" ]; then
        DOCKER_HOST="unix://$work/docker.sock" docker rm -f $(DOCKER_HOST="unix://$work/docker.sock" docker ps -aq) >/dev/null 2>&1 || true
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
    fi
    umount -R "$work/docker" 2>/dev/null || true
    if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT
export STRATA_ROOT="$work/store"

examples/rootfs/make-busybox-rootfs.sh "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
"$STRATA" import -c 'CMD ["sh"]' "$work/rootfs.tar" bb:1 >/dev/null
"$STRATA" save -o "$work/bb.tar" bb:1

"$STRATA" system service "unix://$work/strata.sock" 2>"$work/strata-api.log" &
api_pid=$!
dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" -H "unix://$work/docker.sock" \
    --pidfile "$work/dockerd.pid" --iptables=false --ip6tables=false --bridge=none \
    >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for sock in strata docker; do
    for _ in $(seq 300); do
        DOCKER_HOST="unix://$work/$sock.sock" docker version >/dev/null 2>&1 && break
        sleep 0.1
    done
done
DOCKER_HOST="unix://$work/docker.sock" docker load -q -i "$work/bb.tar" >/dev/null

# Median wall time in ms of RUNS runs of a command.
median_ms() {
    local times=()
    for _ in $(seq "$RUNS"); do
        local t0 t1
        t0=$(date +%s%N)
        "$@" >/dev/null
        t1=$(date +%s%N)
        times+=($(( (t1 - t0) / 1000 )))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)/1000}'
}

on() { local sock=$1; shift; DOCKER_HOST="unix://$work/$sock.sock" docker "$@"; }

# One warm-up each (page cache, dockerd's first container).
on strata run --rm bb:1 true
on docker run --rm bb:1 true
# A few stopped containers for ps to list.
for i in 1 2 3; do on strata run --name "s$i" bb:1 true; on docker run --name "s$i" bb:1 true; done

printf '%-8s %12s %12s %8s %8s\n' what strata_ms dockerd_ms ratio target
strata_run=$(median_ms on strata run --rm bb:1 true)
docker_run=$(median_ms on docker run --rm bb:1 true)
awk -v s="$strata_run" -v d="$docker_run" 'BEGIN {printf "%-8s %12.1f %12.1f %7.2fx %8s\n", "run", s, d, s/d, "<=0.3x"}'
strata_ps=$(median_ms on strata ps -a)
docker_ps=$(median_ms on docker ps -a)
awk -v s="$strata_ps" -v d="$docker_ps" 'BEGIN {printf "%-8s %12.1f %12.1f %7.2fx %8s\n", "ps", s, d, s/d, "<=0.5x"}'
# The request alone: curl's own measure of the exchange, process start-up left out.
api_ms() {
    local sock=$1
    for _ in $(seq "$RUNS"); do
        curl -s -o /dev/null -w '%{time_total}\n' --unix-socket "$work/$sock.sock" \
            "http://localhost/v1.41/containers/json?all=1"
    done | sort -n | awk '{a[NR]=$1*1000} END {printf "%.2f", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'
}
strata_api=$(api_ms strata)
docker_api=$(api_ms docker)
awk -v s="$strata_api" -v d="$docker_api" 'BEGIN {printf "%-8s %12.2f %12.2f %7.2fx %8s\n", "ps-api", s, d, s/d, "<=0.5x"}'
