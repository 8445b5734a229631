#!/usr/bin/env bash
# wasi:http benchmark (issue 17): the example handler (examples/hello-http) served by Strata
# against the floor, a bare wasmtime-wasi-http embedding of ours (bench/bare-wasi-http, the
# `wasmtime serve` model: an instance per request from a ProxyPre, nothing else; also with
# wasmtime's pooling allocator), and against a native container answering the same text
# through `-p` (busybox httpd on the bridge, DNAT), in one run:
#
#   throughput   wrk -t2 -c16 -d${SECONDS_WRK}s --latency on 127.0.0.1 (requests/s, p50, p99),
#                median of ROUNDS (3) rounds, the servers taking turns
#                                                         target: >= 0.9x the bare embedding
#   first        `run -d` of the handler, then one request at once: the time from `run -d`
#                returning (the port is open then) to the response, median of STARTS runs
#                                                         target: <= 5 ms
#
# Everything runs in a network namespace made for the bench (the script re-executes itself
# under `unshare -n`): the native container's bridge and DNAT stay inside; traffic goes to
# 127.0.0.1 only. Needs root, wrk, python3, busybox (installed from Debian when missing).
# STRATA=path and BARE=path skip the builds; KEEP=1 keeps the work directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
[ "$(id -u)" = 0 ] || { echo "http.sh: must run as root" >&2; exit 1; }

if [ -z "${STRATA_HTTP_BENCH_INNER:-}" ]; then
    if ! command -v wrk >/dev/null || ! command -v busybox >/dev/null; then
        echo "== installing wrk, busybox-static" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk busybox-static >&2 || true
    fi
    target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    if [ -z "${STRATA:-}" ] || [ -z "${BARE:-}" ]; then
        echo "== building strata and bare-wasi-http" >&2
        cargo build --release --locked -p strata -p bare-wasi-http >&2
    fi
    export STRATA="${STRATA:-$target_dir/release/strata}"
    export BARE="${BARE:-$target_dir/release/bare-wasi-http}"
    examples/hello-http/build.sh >/dev/null
    export STRATA_HTTP_BENCH_INNER=1
    exec unshare -n "$0" "$@"
fi

ip link set lo up
ROUNDS=${ROUNDS:-3}
STARTS=${STARTS:-20}
SECONDS_WRK=${SECONDS_WRK:-5}
work=$(mktemp -d)
cleanup() {
    "$STRATA" rm -f hs web >/dev/null 2>&1 || true
    [ -n "${bare_pid:-}" ] && kill "$bare_pid" 2>/dev/null || true
    if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT
export STRATA_ROOT="$work/store"

component=examples/hello-http/out/hello-http.wasm
mkdir -p "$work/wasm"
cp "$component" "$work/wasm/hello-http.wasm"
cp examples/hello-http/greeting.txt "$work/wasm/greeting.txt"
tar -C "$work/wasm" -cf "$work/wasm.tar" .
"$STRATA" import --platform wasi/wasm -c 'ENTRYPOINT ["/hello-http.wasm"]' -c 'EXPOSE 8080' \
    "$work/wasm.tar" hello-http >/dev/null
# The native server: the handler's exact answer as a file for busybox httpd.
examples/rootfs/make-busybox-rootfs.sh "$work/rootfs" >/dev/null
mkdir -p "$work/rootfs/www"
{ printf 'Hello from a Wasm HTTP handler: /\n'; cat examples/hello-http/greeting.txt; } > "$work/rootfs/www/index.html"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
"$STRATA" import -c 'ENV PATH=/bin' "$work/rootfs.tar" bb >/dev/null

# wrk's summary: "requests/s p50_ms p99_ms".
measure() {
    local url=$1
    wrk -t2 -c16 -d"${SECONDS_WRK}s" --latency "$url" | python3 -c '
import re, sys
text = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
def ms(label):
    m = re.search(r"\s" + label + r"%\s+([\d.]+)(us|ms|s)\b", text)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors:
    sys.exit("wrk: " + errors.group(1) + " failed responses")
print("%.0f %.3f %.3f" % (rps, ms("50"), ms("99")))
'
}

until_up() {
    for _ in $(seq 500); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.01
    done
    echo "http.sh: $1 never answered" >&2
    return 1
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

declare -A rps p50 p99
run_round() {
    local name=$1 url=$2
    read -r r a b < <(measure "$url")
    rps[$name]+="$r "; p50[$name]+="$a "; p99[$name]+="$b "
}

for round in $(seq "$ROUNDS"); do
    echo "== round $round" >&2
    "$STRATA" run -d --name hs --network host hello-http >/dev/null
    until_up http://127.0.0.1:8080/
    run_round strata http://127.0.0.1:8080/
    "$STRATA" rm -f hs >/dev/null
    for mode in plain pooling; do
        flag=(); [ "$mode" = pooling ] && flag=(--pooling)
        "$BARE" "${flag[@]}" 127.0.0.1:8081 "$component" "$work/wasm" & bare_pid=$!
        until_up http://127.0.0.1:8081/
        run_round "bare-$mode" http://127.0.0.1:8081/
        kill "$bare_pid"; wait "$bare_pid" 2>/dev/null || true; bare_pid=
    done
    "$STRATA" run -d --name web -p 127.0.0.1:8082:80 bb httpd -f -p 80 -h /www >/dev/null
    until_up http://127.0.0.1:8082/
    run_round native http://127.0.0.1:8082/
    "$STRATA" rm -f web >/dev/null
done

# The first request after `run -d`: timed from its return (the port is open) to the answer.
first=$(python3 - "$STRATA" "$STARTS" <<'EOF'
import socket, subprocess, sys, time
strata, starts = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(starts):
    subprocess.run([strata, "run", "-d", "--name", "hs", "--network", "host", "hello-http"],
                   check=True, stdout=subprocess.DEVNULL)
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", 8080))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    times.append((time.perf_counter() - t0) * 1000)
    assert data.startswith(b"HTTP/1.1 200"), data
    subprocess.run([strata, "rm", "-f", "hs"], check=True, stdout=subprocess.DEVNULL)
times.sort()
print(f"{times[len(times) // 2]:.2f} {times[0]:.2f} {times[-1]:.2f}")
EOF
)

m() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
printf '\n%-22s %12s %10s %10s   (median of %s rounds of wrk -t2 -c16 -d%ss)\n' "server" "requests/s" "p50 ms" "p99 ms" "$ROUNDS" "$SECONDS_WRK"
for name in strata bare-plain bare-pooling native; do
    printf '%-22s %12s %10s %10s\n' "$name" "$(m "${rps[$name]}")" "$(m "${p50[$name]}")" "$(m "${p99[$name]}")"
done
s=$(m "${rps[strata]}"); b=$(m "${rps[bare-plain]}"); bp=$(m "${rps[bare-pooling]}"); n=$(m "${rps[native]}")
python3 - "$s" "$b" "$bp" "$n" "$first" <<'EOF'
import sys
s, b, bp, n = map(float, sys.argv[1:5])
first, lo, hi = map(float, sys.argv[5].split())
print()
print(f"strata / bare embedding, pooling    {s / bp:5.2f}x   (target >= 0.9x)")
print(f"strata / bare embedding, on demand  {s / b:5.2f}x")
print(f"bare pooling / bare on demand       {bp / b:5.2f}x")
print(f"strata / native busybox httpd -p    {s / n:5.2f}x")
print(f"first request after run -d          {first:.2f} ms median (min {lo:.2f}, max {hi:.2f})   (target <= 5 ms)")
EOF
