#!/usr/bin/env bash
# Network benchmark (issue 16): a small HTTP server (busybox httpd, one 612-byte page) in a
# container published with `-p`, Strata against podman on the same image, in one run: as root
# (bridge networking: Strata's nftables DNAT, podman's netavark) and as an unprivileged user
# (ROOTLESS_USER, default strata-bench, made if missing: Strata's pasta, and its slirp4netns
# fallback, against podman 4.3's slirp4netns), printing the figures and the ratios.
#
#   throughput   wrk -t2 -c16 -d${SECONDS_WRK}s on 127.0.0.1:PORT (requests/s and mean latency),
#                median of ROUNDS (3) rounds, the engines taking turns   target: >= 1.0x podman
#   start        `run -d --network bridge -p PORT:80 … httpd` until the port answers an HTTP
#                request, median of ${STARTS} runs (the container removed between runs)
#                                                              target: <= 0.2x podman
#
# Everything runs in a network namespace made for the bench (the script re-executes itself
# under `unshare -n`): bridges, veths and firewall rules of both engines stay inside and go
# with it; traffic goes to 127.0.0.1 only. podman's network is 10.88.0.0/16 too, so the two
# engines take turns: Strata's container is removed (and its bridge with it) before podman's
# runs. Needs root, wrk, python3, busybox, podman with netavark (installed from Debian when
# missing and apt can). STRATA=path skips the build; KEEP=1 keeps the work directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
[ "$(id -u)" = 0 ] || { echo "net.sh: must run as root" >&2; exit 1; }

if [ -z "${STRATA_NET_BENCH_INNER:-}" ]; then
    if ! command -v wrk >/dev/null || ! command -v podman >/dev/null; then
        echo "== installing wrk, podman, netavark" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk podman netavark >&2 || true
    fi
    if [ -z "${STRATA:-}" ]; then
        echo "== building strata" >&2
        cargo build --release --locked -p strata >&2
        target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
        export STRATA="$target_dir/release/strata"
    fi
    export STRATA_NET_BENCH_INNER=1
    exec unshare -n "$0" "$@"
fi

for tool in wrk python3 busybox podman; do
    command -v "$tool" >/dev/null || { echo "net.sh: $tool is required" >&2; exit 1; }
done
ip link set lo up
wrk_seconds="${SECONDS_WRK:-10}"
starts="${STARTS:-20}"

work="$(mktemp -d /var/tmp/strata-net-bench.XXXXXX)"
export STRATA_ROOT="$work/store"
podman=(podman --root "$work/podman" --runroot "$work/podman-run" --runtime runc
        --cgroup-manager cgroupfs --network-config-dir "$work/podman-net")
podman_run=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
cleanup() {
    set +e
    "$STRATA" rm -f $("$STRATA" ps -aq) >/dev/null 2>&1
    "${podman[@]}" rm -af -t 0 >/dev/null 2>&1
    [ -n "${r_strata:-}" ] && "${r_strata[@]}" rm -f $("${r_strata[@]}" ps -aq) >/dev/null 2>&1
    [ -n "${r_podman:-}" ] && "${r_podman[@]}" rm -af -t 0 >/dev/null 2>&1
    [ -n "${r_podman:-}" ] && "${r_podman[@]}" rmi -af >/dev/null 2>&1
    [ -n "${run_dir:-}" ] && rm -rf "$run_dir"
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; return; fi
    "${podman[@]}" rmi -af >/dev/null 2>&1
    awk -v w="$work" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r m; do umount "$m" || umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- one image, one site ------------------------------------------------------------------
examples/rootfs/make-busybox-rootfs.sh "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
image=bench/busybox:net
"$STRATA" import -c 'ENV PATH=/bin' "$work/busybox.tar" "$image" >/dev/null
"$STRATA" save "$image" -o "$work/image.tar"
"${podman[@]}" load -q -i "$work/image.tar" >/dev/null
mkdir -p "$work/site"
python3 -c 'print("x" * 611)' > "$work/site/index.html"
server=(-v "$work/site:/www" "$image" httpd -f -p 80 -h /www)

# Waits until 127.0.0.1:$1 answers an HTTP request (at most 10 s).
wait_http() {
    python3 - "$1" <<'EOF'
import socket, sys, time
port, t0 = int(sys.argv[1]), time.monotonic()
while True:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            if s.recv(16).startswith(b"HTTP/1"):
                break
    except OSError:
        pass
    if time.monotonic() - t0 > 10:
        sys.exit("port %d did not answer within 10 s" % port)
    time.sleep(0.001)
EOF
}

# start_median RM-ARGS :: ENGINE-COMMAND...: the median seconds from spawning `run -d … -p
# 18090:80` until the port answers an HTTP request, timed in one python process (so no
# interpreter start-up is counted), the container removed (`rm RM-ARGS`) between runs.
start_median() {
    python3 - "$starts" "$@" :: "${extra[@]}" --network bridge -p 18090:80 "${server[@]}" <<'EOF'
import socket, statistics, subprocess, sys, time
args = sys.argv[1:]
runs = int(args.pop(0))
sep = args.index("::")
rm_args, rest = args[:sep], args[sep + 1:]
sep = rest.index("::")
engine, run_args = rest[:sep], rest[sep + 1:]
times = []
for _ in range(runs):
    t0 = time.monotonic()
    run = subprocess.run(engine + ["run", "-d"] + run_args, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit("run -d failed: " + run.stderr)
    cid = run.stdout.strip()
    while True:
        try:
            with socket.create_connection(("127.0.0.1", 18090), timeout=1) as s:
                s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/1"):
                    break
        except OSError:
            pass
        if time.monotonic() - t0 > 10:
            sys.exit("port 18090 did not answer within 10 s")
        time.sleep(0.001)
    times.append(time.monotonic() - t0)
    subprocess.run(engine + ["rm"] + rm_args + [cid], check=True, capture_output=True)
print("%.4f" % statistics.median(times))
EOF
}

# throughput ENGINE-COMMAND...: "requests/s mean-latency-ms" of wrk against the container.
throughput() {
    local id out
    id="$("$@" run -d "${extra[@]}" --network bridge -p 18080:80 "${server[@]}")"
    wait_http 18080
    out="$(wrk -t2 -c16 -d"${wrk_seconds}s" --latency http://127.0.0.1:18080/index.html)"
    # SIGKILL first: podman's rm -f waits 10 s for an httpd that is pid 1.
    "$@" kill "$id" >/dev/null 2>&1 || true
    "$@" rm -f "$id" >/dev/null
    echo "$out" >&2
    local rps lat
    rps="$(echo "$out" | awk '/^Requests\/sec/ { print $2 }')"
    lat="$(echo "$out" | awk '$1 == "Latency" && NF >= 4 { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }; print v; exit }')"
    echo "$rps $lat"
}

# The median of ROUNDS values (one per line on stdin).
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# throughputs NAME-A NAME-B: ROUNDS rounds of `throughput` for engines A and B taking turns
# (arrays named by $1 and $2, with their extra flags in $1_extra and $2_extra), so that
# drift of the machine hits both; prints "A-rps A-lat B-rps B-lat", medians.
throughputs() {
    local -n a="$1" b="$2" a_extra="$1_extra" b_extra="$2_extra"
    local i ar al br bl ars=() als=() brs=() bls=()
    for i in $(seq "$rounds"); do
        extra=("${a_extra[@]}")
        read -r ar al < <(throughput "${a[@]}")
        extra=("${b_extra[@]}")
        read -r br bl < <(throughput "${b[@]}")
        ars+=("$ar") als+=("$al") brs+=("$br") bls+=("$bl")
    done
    echo "$(printf '%s\n' "${ars[@]}" | median) $(printf '%s\n' "${als[@]}" | median)" \
         "$(printf '%s\n' "${brs[@]}" | median) $(printf '%s\n' "${bls[@]}" | median)"
}
rounds="${ROUNDS:-3}"

strata=("$STRATA")
strata_extra=()
podman_extra=("${podman_run[@]}")
echo "== root throughput, $rounds rounds each, taking turns" >&2
read -r s_rps s_lat p_rps p_lat < <(throughputs strata podman)
echo "== strata: start ($starts runs)" >&2
extra=()
s_start="$(start_median -f :: "$STRATA")"
echo "== podman: start ($starts runs)" >&2
extra=("${podman_run[@]}")
p_start="$(start_median -f -t 0 :: "${podman[@]}")"

# --- rootless: the same, as an unprivileged user (Strata: pasta; podman 4.3: slirp4netns) ---
# pasta copies the host's routes: the bench namespace gets a way out (a veth to nowhere).
ip link add up0 type veth peer name up1
ip addr add 192.0.2.1/24 dev up0
ip link set up0 up && ip link set up1 up
ip route add default via 192.0.2.2
user="${ROOTLESS_USER:-strata-bench}"
id -u "$user" >/dev/null 2>&1 || useradd -m "$user"
chmod 0666 /dev/net/tun
chmod 0755 "$work"
mkdir -p "$work/rootless"
# podman refuses a run root longer than 50 characters.
run_dir="$(mktemp -d /tmp/strata-net-run.XXXXXX)"
cp "$work/busybox.tar" "$work/image.tar" "$work/rootless/"
chown -R "$user" "$work/rootless" "$run_dir"
as_user=(setpriv --reuid "$user" --regid "$user" --init-groups --
         env HOME="$work/rootless" XDG_RUNTIME_DIR="$run_dir")
r_strata=("${as_user[@]}" "$STRATA" --root "$work/rootless/store")
r_podman=("${as_user[@]}" podman --root "$work/rootless/podman" --runroot "$run_dir/podman"
          --runtime runc --cgroup-manager cgroupfs --events-backend file)
"${r_strata[@]}" import -c 'ENV PATH=/bin' "$work/rootless/busybox.tar" "$image" >/dev/null
"${r_podman[@]}" load -q -i "$work/rootless/image.tar" >/dev/null
# Strata's fallback: slirp4netns, when pasta is not on PATH.
mkdir -p "$work/nopasta"
for t in slirp4netns newuidmap newgidmap; do ln -sf "$(command -v "$t")" "$work/nopasta/$t"; done
r_slirp=("${as_user[@]}" PATH="$work/nopasta:/usr/sbin:/sbin" "$STRATA" --root "$work/rootless/store")
r_strata_extra=() r_podman_extra=("${podman_run[@]}") r_slirp_extra=()
echo "== rootless throughput (strata pasta vs podman), $rounds rounds each" >&2
read -r rs_rps rs_lat rp_rps rp_lat < <(throughputs r_strata r_podman)
echo "== rootless throughput (strata slirp4netns vs podman), $rounds rounds each" >&2
read -r rl_rps rl_lat rp2_rps rp2_lat < <(throughputs r_slirp r_podman)
echo "== rootless starts ($starts runs each)" >&2
extra=()
rs_start="$(start_median -f :: "${r_strata[@]}")"
rl_start="$(start_median -f :: "${r_slirp[@]}")"
extra=("${podman_run[@]}")
rp_start="$(start_median -f -t 0 :: "${r_podman[@]}")"
"${r_podman[@]}" rm -af -t 0 >/dev/null 2>&1 || true

python3 - "$s_rps" "$s_lat" "$s_start" "$p_rps" "$p_lat" "$p_start" \
    "$rs_rps" "$rs_lat" "$rs_start" "$rp_rps" "$rp_lat" "$rp_start" \
    "$rl_rps" "$rl_lat" "$rl_start" "$rp2_rps" "$rp2_lat" <<'EOF'
import sys
v = list(map(float, sys.argv[1:]))
def table(title, s_rps, s_lat, s_start, p_rps, p_lat, p_start):
    print(title)
    print(f"{'':32}{'strata':>12}{'podman':>12}{'strata/podman':>16}")
    print(f"{'  throughput (requests/s)':32}{s_rps:>12.0f}{p_rps:>12.0f}{s_rps / p_rps:>15.2f}x   target >= 1.0x")
    print(f"{'  mean latency (ms)':32}{s_lat:>12.2f}{p_lat:>12.2f}{s_lat / p_lat:>15.2f}x")
    print(f"{'  start until port answers (ms)':32}{s_start * 1000:>12.1f}{p_start * 1000:>12.1f}{s_start / p_start:>15.2f}x   target <= 0.2x")
table("root (strata: bridge + nftables DNAT; podman: netavark)", *v[:6])
table("rootless (strata: pasta; podman 4.3: slirp4netns)", *v[6:12])
table("rootless, strata's fallback (both slirp4netns)", *v[12:15], v[15], v[16], v[11])
EOF
