#!/usr/bin/env bash
# Lifecycle benchmark: detached containers, Strata against podman (conmon) and Debian's
# docker.io engine (a dockerd this script starts on a private socket and data root), in one
# run, printing medians and the ratio strata/peer.
#
#   run -d + stop   `run -d IMG sh -c 'trap "exit 0" TERM; sleep 1000 & wait'` then `stop`
#                   of that container: the service round trip        target: <= 0.1x both
#   exec            `exec CONTAINER true` into a running container   target: <= 0.1x both
#   idle monitors   IDLE (100) detached `sleep` containers at once: the resident memory
#                   of what keeps each one (strata: its monitor and the native
#                   intermediate it forks; podman: conmon), RSS and PSS per container
#   logs 100 MB     `logs` of a container that wrote 100 MB, to /dev/null
#
# Needs root, hyperfine, python3 and busybox; podman and dockerd are used when installed
# (docker.io is installed from Debian when missing and apt can: its service is not started).
# Everything lives under a mktemp directory in /var/tmp, removed afterwards (KEEP=1 keeps it).
# RUNS/WARMUP override hyperfine's counts; STRATA=path skips the build.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
runs="${RUNS:-10}"
warmup="${WARMUP:-2}"
idle="${IDLE:-100}"

[ "$(id -u)" = 0 ] || { echo "lifecycle.sh: must run as root" >&2; exit 1; }
for tool in hyperfine python3 busybox; do
    command -v "$tool" >/dev/null || { echo "lifecycle.sh: $tool is required" >&2; exit 1; }
done
if ! command -v dockerd >/dev/null && command -v apt-get >/dev/null; then
    echo "== installing docker.io (its service is not started)" >&2
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >&2 || true
    rm -f /usr/sbin/policy-rc.d
fi

if [ -z "${STRATA:-}" ]; then
    echo "== building strata" >&2
    cargo build --release --locked -p strata >&2
    target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    STRATA="$target_dir/release/strata"
fi

work="$(mktemp -d /var/tmp/strata-lifecycle-bench.XXXXXX)"
export STRATA_ROOT="$work/store"
podman=(podman --root "$work/podman" --runroot "$work/podman-run" --runtime runc)
podman_run=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768 --network none)
docker=(docker --host "unix://$work/docker.sock")
dockerd_pid=
cleanup() {
    set +e
    "$STRATA" rm -f $("$STRATA" ps -aq) >/dev/null 2>&1
    command -v podman >/dev/null && "${podman[@]}" rm -af -t 0 >/dev/null 2>&1
    if [ -n "$dockerd_pid" ]; then
        "${docker[@]}" rm -f $("${docker[@]}" ps -aq) >/dev/null 2>&1
        kill "$dockerd_pid"; wait "$dockerd_pid" 2>/dev/null
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; return; fi
    command -v podman >/dev/null && "${podman[@]}" rmi -af >/dev/null 2>&1
    awk -v w="$work" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r m; do umount "$m" || umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- one busybox image in each engine ------------------------------------------------------
examples/rootfs/make-busybox-rootfs.sh "$work/rootfs"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
image=bench/busybox:lifecycle
"$STRATA" import -c 'ENV PATH=/bin' "$work/busybox.tar" "$image" >/dev/null
"$STRATA" save "$image" -o "$work/image.tar"
service='trap "exit 0" TERM; sleep 1000 & wait'

engines=("strata")
declare -A run_cmd stop_cmd
run_cmd[strata]="$STRATA run -d $image"
stop_cmd[strata]="$STRATA stop"

if command -v podman >/dev/null; then
    loaded="$("${podman[@]}" load -q -i "$work/image.tar" 2>&1 | sed -n 's/^Loaded image[^:]*: *//p' | head -n1)"
    if [ -n "$loaded" ] && "${podman[@]}" run --rm "${podman_run[@]}" "$loaded" true >/dev/null 2>&1; then
        engines+=("podman")
        run_cmd[podman]="${podman[*]} run -d ${podman_run[*]} $loaded"
        stop_cmd[podman]="${podman[*]} stop"
    else
        echo "lifecycle.sh: podman does not run here, skipping it" >&2
    fi
fi
if command -v dockerd >/dev/null; then
    dockerd --host "unix://$work/docker.sock" --data-root "$work/docker" \
        --exec-root "$work/docker-exec" --pidfile "$work/docker.pid" \
        --iptables=false --ip-masq=false --bridge=none >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 100); do "${docker[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
    if "${docker[@]}" load -q -i "$work/image.tar" >/dev/null 2>&1 &&
        "${docker[@]}" run --rm --network none "$image" true >/dev/null 2>&1; then
        engines+=("docker")
        run_cmd[docker]="${docker[*]} run -d --network none $image"
        stop_cmd[docker]="${docker[*]} stop"
    else
        echo "lifecycle.sh: dockerd does not run here, skipping it ($(tail -n1 "$work/dockerd.log"))" >&2
    fi
else
    echo "lifecycle.sh: dockerd is not installed, skipping docker" >&2
fi

# --- run -d + stop --------------------------------------------------------------------------
rt_args=()
for e in "${engines[@]}"; do
    rt_args+=(-n "$e" "id=\$(${run_cmd[$e]} sh -c '$service') && ${stop_cmd[$e]} \$id >/dev/null")
done
hyperfine --shell bash -w "$warmup" -r "$runs" --export-json "$work/roundtrip.json" "${rt_args[@]}" >&2
# --- exec into a running container ----------------------------------------------------------
ex_args=(-n strata "$STRATA exec \$(cat $work/strata.id) true")
"$STRATA" run -d "$image" sleep 1000 > "$work/strata.id"
if [[ " ${engines[*]} " == *" podman "* ]]; then
    ${run_cmd[podman]} sleep 1000 > "$work/podman.id"
    ex_args+=(-n podman "${podman[*]} exec \$(cat $work/podman.id) true")
fi
if [[ " ${engines[*]} " == *" docker "* ]]; then
    ${run_cmd[docker]} sleep 1000 > "$work/docker.id"
    ex_args+=(-n docker "${docker[*]} exec \$(cat $work/docker.id) true")
fi
hyperfine --shell bash -w "$warmup" -r "$runs" --export-json "$work/exec.json" "${ex_args[@]}" >&2
# Containers the round trips left (stopped): removed, so the idle count is exact.
"$STRATA" rm -f $("$STRATA" ps -aq) >/dev/null 2>&1 || true
command -v podman >/dev/null && "${podman[@]}" rm -af >/dev/null 2>&1 || true
[ -n "$dockerd_pid" ] && "${docker[@]}" rm -f $("${docker[@]}" ps -aq) >/dev/null 2>&1 || true

# --- idle monitors ----------------------------------------------------------------------------
# RSS and PSS (kB) summed over the processes whose command line matches $2, per container.
memory() {
    python3 - "$1" "$2" <<'EOF'
import os, re, sys
count, pattern = int(sys.argv[1]), re.compile(sys.argv[2])
rss = pss = procs = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        if not pattern.search(cmd):
            continue
        for line in open(f"/proc/{pid}/smaps_rollup"):
            k, v = line.split(":", 1)
            if k == "Rss": rss += int(v.split()[0])
            if k == "Pss": pss += int(v.split()[0])
        procs += 1
    except OSError:
        pass
print(f"{procs} {rss / count:.0f} {pss / count:.0f}")
EOF
}
idle_line() {
    local name=$1 pattern=$2
    read -r procs rss pss < <(memory "$idle" "$pattern")
    printf '  %-8s %3d processes for %d containers: RSS %6s kB, PSS %6s kB per container\n' \
        "$name" "$procs" "$idle" "$rss" "$pss" | tee -a "$work/idle.txt" >&2
}
echo "== $idle idle detached containers per engine" >&2
: > "$work/idle.txt"
for _ in $(seq "$idle"); do "$STRATA" run -d "$image" sleep 1000 >/dev/null; done
# The monitor, and for a native container the intermediate forked from it (same cmdline).
idle_line strata "__monitor "
"$STRATA" rm -f $("$STRATA" ps -aq) >/dev/null
if [[ " ${engines[*]} " == *" podman "* ]]; then
    for _ in $(seq "$idle"); do "${podman[@]}" run -d "${podman_run[@]}" "$loaded" sleep 1000 >/dev/null; done
    idle_line podman "^/usr/bin/conmon "
    "${podman[@]}" rm -af -t 0 >/dev/null 2>&1
fi

# --- logs of 100 MB -------------------------------------------------------------------------
writer='yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c 100000000'
logs_names=(strata) logs_cmds=("$STRATA logs big")
"$STRATA" run -d --name big "$image" sh -c "$writer" >/dev/null
"$STRATA" wait big >/dev/null
if [[ " ${engines[*]} " == *" podman "* ]]; then
    "${podman[@]}" run -d --name big "${podman_run[@]}" "$loaded" sh -c "$writer" >/dev/null
    "${podman[@]}" wait big >/dev/null
    logs_names+=(podman) logs_cmds+=("${podman[*]} logs big")
fi
if [[ " ${engines[*]} " == *" docker "* ]]; then
    "${docker[@]}" run -d --name big --network none "$image" sh -c "$writer" >/dev/null
    "${docker[@]}" wait big >/dev/null
    logs_names+=(docker) logs_cmds+=("${docker[*]} logs big")
fi
logs_args=()
for i in "${!logs_names[@]}"; do logs_args+=(-n "${logs_names[$i]}" "${logs_cmds[$i]} >/dev/null 2>&1"); done
hyperfine --shell bash -w 1 -r "${LOG_RUNS:-5}" --export-json "$work/logs.json" "${logs_args[@]}" >&2

python3 - "$work/roundtrip.json" "$work/exec.json" "$work/logs.json" "$work/idle.txt" "${engines[@]}" <<'EOF'
import json, sys
rt, ex, logs, idle, *engines = sys.argv[1:]
def table(path, title, names):
    rs = json.load(open(path))["results"]
    med = {names[i]: r["median"] for i, r in enumerate(rs)}
    print(f"{title} (median):")
    for n, m in med.items():
        print(f"  {n:8s} {m * 1000:9.1f} ms")
    for n, m in med.items():
        if n != "strata":
            print(f"  strata/{n}: {med['strata'] / m:.3f}")
table(rt, "run -d + stop", engines)
table(ex, "exec CONTAINER true", engines)
log_names = [n for n in ["strata", "podman", "docker"] if n == "strata" or n in engines]
table(logs, "logs of 100 MB", log_names)
print("idle detached containers:")
print(open(idle).read(), end="")
EOF
