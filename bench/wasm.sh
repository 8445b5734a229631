#!/usr/bin/env bash
# Wasm benchmark: `strata run` against its floors, in one run, printing medians and ratios.
#
#   a. start-up: `strata run --rm hello:pX exit 0` vs bare-wasmtime (same engine config, own
#      compile cache, a plain preopened directory as /, p1 modules run natively on
#      wasmtime_wasi::p1, file I/O on the calling thread)        target: ratio <= 1.2
#   b. the same strata command vs crun running a busybox `echo hi` bundle (plus the
#      `unshare -m sh -c true` wrapper floor, which can be subtracted from crun)
#   c. file-heavy: guest `files 1000 100` on an image whose layer holds /bench/in-0..999
#      (strata, --rm: a fresh upper each run) vs bare-wasmtime on a plain directory
#      holding the same files (the outputs are deleted before each run)  target: <= 1.5
#   d. peak RSS (KiB, /usr/bin/time -f %M) of strata and bare-wasmtime for `exit 0`
#
# Needs hyperfine, python3, /usr/bin/time; (b) needs root, crun, unshare and busybox-static
# (/bin/busybox) and is skipped without them. Work files go under a mktemp directory in
# /var/tmp, removed afterwards (KEEP=1 keeps it). RUNS/WARMUP override hyperfine's counts;
# ROUNDS (default 6) is how many alternating rounds the runs are split into.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
runs="${RUNS:-40}"
warmup="${WARMUP:-5}"

for tool in hyperfine python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "wasm.sh: $tool is required" >&2; exit 1; }
done

echo "== building strata, bare-wasmtime and the test probe (tests/probe)" >&2
cargo build --release --locked -p strata -p bare-wasmtime >&2
tests/probe/build.sh >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

work="$(mktemp -d /var/tmp/strata-wasm-bench.XXXXXX)"
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
root="$work/store"
cache="$work/bare-cache"
results="$work/results"
mkdir -p "$results"
# Both programs run from fresh copies: how a binary's pages sit in the page cache changes
# its start-up (on this kernel a build output that has aged in the cache faulted ~65 more
# times per start than a fresh copy of it, +0.25 ms), and the two builds have aged apart.
strata="$work/strata"
bare="$work/bare-wasmtime"
cp "$target_dir/release/strata" "$strata"
cp "$target_dir/release/bare-wasmtime" "$bare"

rounds="${ROUNDS:-6}"
per_round=$(( (runs + rounds - 1) / rounds ))
runs=$(( per_round * rounds ))  # what is run, and printed
hf() { # hf NAME [hyperfine args...]: runs hyperfine, JSON into $results/NAME.json
    # In ROUNDS short rounds, so the commands alternate: this machine drifts between faster
    # and slower phases, and one long batch per command would put the drift into the ratio.
    local name="$1" r
    shift
    echo "== $name" >&2
    for r in $(seq "$rounds"); do
        hyperfine -N --warmup "$warmup" --runs "$per_round" --style basic \
            --export-json "$results/$name.round$r.json" "$@" >&2
    done
    python3 - "$results" "$name" "$rounds" <<'EOF_MERGE'
import json, os, statistics, sys
results, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
merged = None
for r in range(1, rounds + 1):
    part = json.load(open(os.path.join(results, f"{name}.round{r}.json")))["results"]
    if merged is None:
        merged = [{"command": p["command"], "times": []} for p in part]
    for m, p in zip(merged, part):
        m["times"].extend(p["times"])
for m in merged:
    t = m["times"]
    m.update(median=statistics.median(t), mean=statistics.mean(t),
             stddev=statistics.pstdev(t), min=min(t))
json.dump({"results": merged}, open(os.path.join(results, f"{name}.json"), "w"))
EOF_MERGE
}

# --- images and the floors' plain directories --------------------------------------------
for v in p1 p2; do
    wasm="tests/probe/out/probe-$v.wasm"
    # hello:pX: just the probe, as /hello.wasm.
    mkdir -p "$work/rootfs-$v"
    cp "$wasm" "$work/rootfs-$v/hello.wasm"
    tar -C "$work/rootfs-$v" -cf "$work/hello-$v.tar" .
    "$strata" --root "$root" import --platform wasi/wasm -c 'ENTRYPOINT ["/hello.wasm"]' "$work/hello-$v.tar" "hello:$v" >/dev/null
    # files:pX: /hello.wasm and /bench/in-0..999, 1 KiB each (what `files` itself would write).
    mkdir -p "$work/files-$v/bench"
    cp "$wasm" "$work/files-$v/hello.wasm"
    python3 - "$work/files-$v/bench" <<'EOF'
import os, sys
d = sys.argv[1]
for i in range(1000):
    with open(os.path.join(d, f"in-{i}"), "wb") as f:
        f.write(bytes([i % 251]) * 1024)
EOF
    tar -C "$work/files-$v" -cf "$work/files-$v.tar" .
    "$strata" --root "$root" import --platform wasi/wasm -c 'ENTRYPOINT ["/hello.wasm"]' "$work/files-$v.tar" "files:$v" >/dev/null
done

# --- warm both compile caches (and check that everything runs) ---------------------------
for v in p1 p2; do
    "$strata" --root "$root" run --rm "hello:$v" exit 0 >/dev/null
    "$bare" "$cache" "$work/rootfs-$v" /hello.wasm exit 0 >/dev/null
    out="$("$strata" --root "$root" run --rm "files:$v" files 1000 100)"
    [ "$out" = "read 1000 wrote 100" ] || { echo "strata files:$v printed: $out" >&2; exit 1; }
    out="$("$bare" "$cache" "$work/files-$v" /hello.wasm files 1000 100)"
    [ "$out" = "read 1000 wrote 100" ] || { echo "bare-wasmtime files-$v printed: $out" >&2; exit 1; }
    find "$work/files-$v/bench" -name 'out-*' -delete
done

# --- crun bundle -------------------------------------------------------------------------
crun_ok=0
if [ "$(id -u)" = 0 ] && command -v crun >/dev/null && command -v unshare >/dev/null && [ -x /bin/busybox ]; then
    bundle="$work/bundle"
    mkdir -p "$bundle/rootfs/bin"
    cp /bin/busybox "$bundle/rootfs/bin/busybox"
    ln -s busybox "$bundle/rootfs/bin/echo"
    (cd "$bundle" && crun spec)
    python3 - "$bundle/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/echo", "hi"]
c["process"]["terminal"] = False
json.dump(c, open(p, "w"), indent=2)
EOF
    # crun refuses this host's hybrid cgroup layout unless cgroup2 is out of sight, so run it
    # in a private mount namespace without /sys/fs/cgroup/unified. `$$` (this sh's pid) makes
    # the container id unique per run; the floor is the same `unshare -m sh` with no crun.
    cat >"$work/crun-echo.sh" <<EOF
umount /sys/fs/cgroup/unified 2>/dev/null
exec crun run --bundle $bundle bench-\$\$
EOF
    if out="$(unshare -m sh "$work/crun-echo.sh" 2>&1)" && [ "$out" = hi ]; then
        crun_ok=1
    else
        echo "wasm.sh: crun does not run here, skipping (b): $out" >&2
    fi
else
    echo "wasm.sh: (b) needs root, crun, unshare and /bin/busybox; skipping" >&2
fi

# --- measurements ------------------------------------------------------------------------
for v in p1 p2; do
    hf "start-$v" \
        -n "strata $v" "$strata --root $root run --rm hello:$v exit 0" \
        -n "bare-wasmtime $v" "$bare $cache $work/rootfs-$v /hello.wasm exit 0"
done
if [ "$crun_ok" = 1 ]; then
    hf "crun" \
        -n "strata p2" "$strata --root $root run --rm hello:p2 exit 0" \
        -n "crun echo" "unshare -m sh $work/crun-echo.sh" \
        -n "unshare floor" "unshare -m sh -c true"
fi
for v in p1 p2; do
    hf "files-$v" \
        -n "strata files $v" "$strata --root $root run --rm files:$v files 1000 100" \
        --prepare "find $work/files-$v/bench -name out-* -delete" \
        -n "bare-wasmtime files $v" "$bare $cache $work/files-$v /hello.wasm files 1000 100"
done
# `--prepare` applies to every command: it is a no-op for strata (fresh upper per run), so
# both sides pay the same `find`, which hyperfine does not time anyway.

rss() { # rss CMD...: median of 5 peak RSS readings, KiB
    local i
    for i in 1 2 3 4 5; do
        /usr/bin/time -f %M -o "$work/rss" "$@" >/dev/null
        cat "$work/rss"
    done | sort -n | sed -n 3p
}
echo "== peak RSS" >&2
rss_strata="$(rss "$strata" --root "$root" run --rm hello:p2 exit 0)"
rss_bare="$(rss "$bare" "$cache" "$work/rootfs-p2" /hello.wasm exit 0)"
rss_strata_p1="$(rss "$strata" --root "$root" run --rm hello:p1 exit 0)"
rss_bare_p1="$(rss "$bare" "$cache" "$work/rootfs-p1" /hello.wasm exit 0)"

# --- summary -----------------------------------------------------------------------------
python3 - "$results" "$crun_ok" "$rss_strata" "$rss_bare" "$rss_strata_p1" "$rss_bare_p1" "$runs" "$warmup" <<'EOF'
import json, os, sys
results, crun_ok = sys.argv[1], sys.argv[2] == "1"
rss_strata, rss_bare, rss_strata_p1, rss_bare_p1 = map(int, sys.argv[3:7])
runs, warmup = sys.argv[7], sys.argv[8]

def load(name):
    return [(r["command"], r) for r in json.load(open(os.path.join(results, name + ".json")))["results"]]

def ms(r):
    return r["median"] * 1000

def line(label, r):
    return f"  {label:<34} median {ms(r):8.2f} ms   (mean {r['mean']*1000:.2f} ± {r['stddev']*1000:.2f}, min {r['min']*1000:.2f})"

def verdict(ratio, target):
    return "ok" if ratio <= target else "OVER TARGET"

print()
print(f"===== Wasm benchmark summary (hyperfine -N, {runs} runs in alternating rounds, {warmup} warmup each; nproc {os.cpu_count()}) =====")
print("a. start-up, `run --rm hello:pX exit 0` vs bare-wasmtime (target ratio <= 1.2)")
for v in ("p1", "p2"):
    (_, s), (_, b) = load(f"start-{v}")
    print(line(f"strata {v}", s))
    print(line(f"bare-wasmtime {v}", b))
    r = s["median"] / b["median"]
    print(f"  -> ratio {v}: {r:.2f}  [{verdict(r, 1.2)}]  (strata - floor = {ms(s) - ms(b):.2f} ms)")
print("b. `strata run --rm hello:p2 exit 0` vs crun busybox `echo hi`")
if crun_ok:
    (_, s), (_, c), (_, u) = load("crun")
    print(line("strata p2", s))
    print(line("crun (unshare -m sh + crun run)", c))
    print(line("unshare -m sh -c true (floor)", u))
    print(f"  -> strata / crun: {s['median'] / c['median']:.2f}")
    print(f"  -> crun minus the unshare floor: {ms(c) - ms(u):.2f} ms; strata / that: {ms(s) / (ms(c) - ms(u)):.2f}")
else:
    print("  skipped (see above)")
print("c. file-heavy, guest `files 1000 100` (target ratio <= 1.5)")
for v in ("p1", "p2"):
    (_, s), (_, b) = load(f"files-{v}")
    print(line(f"strata {v}", s))
    print(line(f"bare-wasmtime {v}", b))
    r = s["median"] / b["median"]
    print(f"  -> ratio {v}: {r:.2f}  [{verdict(r, 1.5)}]  (strata - floor = {ms(s) - ms(b):.2f} ms)")
print("d. peak RSS, `exit 0` (median of 5, /usr/bin/time -f %M)")
print(f"  strata p2 {rss_strata:>8} KiB   bare-wasmtime p2 {rss_bare:>8} KiB   ratio {rss_strata / rss_bare:.2f}")
print(f"  strata p1 {rss_strata_p1:>8} KiB   bare-wasmtime p1 {rss_bare_p1:>8} KiB   ratio {rss_strata_p1 / rss_bare_p1:.2f}")
EOF
