#!/usr/bin/env bash
# Native benchmark: `strata run --rm busybox /bin/true` against other runtimes starting the
# same unpacked layers, in one run, printing medians and the ratio strata/peer.
#
#   crun+overlay   mount an overlay of the strata store's layer dirs (fresh upper/work), run
#                  `crun run` on a bundle over it, unmount: the part of `strata run` that crun
#                  covers, timed as a whole                target: strata/crun+overlay <= 1.0
#   runc+overlay   the same with runc
#   podman         `podman run --rm` of the same image (`strata save` | `podman load`)
#   unshare floor  `unshare -m -p -u -i -n --fork /bin/true`
#
# Needs root, hyperfine and python3; a peer whose tool is missing or does not run here is
# skipped with a message. Work files (the store, bundle, podman's store) go under a mktemp
# directory in /var/tmp, unmounted and removed afterwards (KEEP=1 keeps them). RUNS/WARMUP
# override hyperfine's counts; STRATA=path skips the build and uses that binary.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
runs="${RUNS:-20}"
warmup="${WARMUP:-3}"

[ "$(id -u)" = 0 ] || { echo "native.sh: must run as root" >&2; exit 1; }
for tool in hyperfine python3 unshare busybox; do
    command -v "$tool" >/dev/null || { echo "native.sh: $tool is required" >&2; exit 1; }
done

if [ -z "${STRATA:-}" ]; then
    echo "== building strata" >&2
    cargo build --release --locked -p strata >&2
    target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    STRATA="$target_dir/release/strata"
fi

work="$(mktemp -d /var/tmp/strata-native-bench.XXXXXX)"
store="$work/store"
bundle="$work/bundle"
podman=(podman --root "$work/podman" --runroot "$work/podman-run")
cleanup() {
    set +e
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; return; fi
    command -v podman >/dev/null && [ -d "$work/podman" ] && "${podman[@]}" rmi -af >/dev/null 2>&1
    # Never leave a mount behind (an interrupted crun/runc run, podman's layers): unmount
    # everything under $work, deepest first, before removing it.
    awk -v w="$work" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r m; do umount "$m" || umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
results="$work/results.json"
export STRATA_ROOT="$store"

# --- the image: a busybox rootfs imported into a private store ---------------------------
examples/rootfs/make-busybox-rootfs.sh "$work/rootfs"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
image=bench/busybox:native
"$STRATA" import "$work/busybox.tar" "$image" >/dev/null
"$STRATA" run --rm "$image" /bin/true || { echo "native.sh: strata cannot run $image" >&2; exit 1; }
names=("strata")
cmds=("$STRATA run --rm $image /bin/true")

# Overlay lowerdir: the image's unpacked layers in the store, topmost first.
lower="$("$STRATA" inspect -f '{{json .RootFS.Layers}}' "$image" | python3 -c '
import json, sys
print(":".join(sys.argv[1] + "/layers/" + d.split(":", 1)[1] + "/fs" for d in reversed(json.load(sys.stdin))))
' "$store")"

# --- crun and runc: one bundle, the rootfs an overlay mounted per run --------------------
mkdir -p "$bundle/rootfs"
( cd "$bundle" && { crun spec || runc spec; } ) 2>/dev/null || true
if [ -f "$bundle/config.json" ]; then
    # `crun spec`'s defaults (the usual mounts, 3 capabilities, no seccomp filter, so a bit
    # less work than strata's docker-default profile); writable root, no terminal, as strata.
    python3 - "$bundle/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/true"]
c["process"].pop("terminal", None)
c["root"] = {"path": "rootfs", "readonly": False}
json.dump(c, open(p, "w"), indent=2)
EOF
fi
# run-oci.sh RUNTIME: one run with a fresh upper/work; `$$` makes the id and dirs unique.
# crun 1.8 refuses this host's hybrid cgroups (v1 controllers plus a cgroup2 `unified`
# mount: "cgroups in hybrid mode not supported") and has no flag to ignore cgroup2, so it
# runs in a private mount namespace without /sys/fs/cgroup/unified; runc runs as is.
cat >"$work/run-oci.sh" <<EOF
d=$work/run.\$\$
mkdir -p \$d/upper \$d/work
mount -t overlay overlay -o lowerdir=$lower,upperdir=\$d/upper,workdir=\$d/work $bundle/rootfs || exit
case \$1 in
crun) unshare -m sh -c "umount /sys/fs/cgroup/unified 2>/dev/null; exec crun run --bundle $bundle bench-\$\$" ;;
*) \$1 run --bundle $bundle bench-\$\$ ;;
esac
rc=\$?
umount $bundle/rootfs
rm -rf \$d
exit \$rc
EOF
for rt in crun runc; do
    if ! command -v "$rt" >/dev/null || [ ! -f "$bundle/config.json" ]; then
        echo "native.sh: $rt is not installed, skipping it" >&2
    elif out="$(sh "$work/run-oci.sh" "$rt" 2>&1)"; then
        names+=("$rt+overlay")
        cmds+=("sh $work/run-oci.sh $rt")
    else
        echo "native.sh: $rt does not run here, skipping it: $out" >&2
    fi
done

# --- podman: the same image through strata save / podman load, in a private store -------
# Podman's defaults fail here: its crun hits the hybrid-cgroup refusal above (hence runc),
# and its default nofile/nproc limits exceed this host's hard limits (hence --ulimit).
podman_flags="${PODMAN_FLAGS:---runtime runc --ulimit nofile=20000:20000 --ulimit nproc=32768:32768}"
if command -v podman >/dev/null; then
    "$STRATA" save "$image" -o "$work/image.tar"
    loaded="$("${podman[@]}" load -q -i "$work/image.tar" 2>&1)" || true
    loaded="$(sed -n 's/^Loaded image[^:]*: *//p' <<<"$loaded" | head -n1)"
    pcmd="${podman[*]} run --rm $podman_flags $loaded /bin/true"
    if [ -z "$loaded" ]; then
        echo "native.sh: podman load failed, skipping podman" >&2
    elif out="$($pcmd 2>&1)"; then
        names+=("podman" "podman --network none")
        cmds+=("$pcmd" "${podman[*]} run --rm $podman_flags --network none $loaded /bin/true")
    else
        echo "native.sh: podman does not run here, skipping it: $out" >&2
    fi
else
    echo "native.sh: podman is not installed, skipping it" >&2
fi

names+=("unshare floor")
cmds+=("unshare -m -p -u -i -n --fork /bin/true")

# --- measurements ------------------------------------------------------------------------
args=()
for i in "${!names[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
echo "== hyperfine (commands:)" >&2
printf '   %s\n' "${cmds[@]}" >&2
hyperfine -N --warmup "$warmup" --runs "$runs" --style basic --export-json "$results" "${args[@]}" >&2

# --- summary -----------------------------------------------------------------------------
python3 - "$results" "$runs" "$warmup" "$podman_flags" <<'EOF'
import json, os, sys
results, runs, warmup, podman_flags = sys.argv[1:5]
rs = json.load(open(results))["results"]
strata = rs[0]["median"]
print()
print(f"===== Native benchmark: `run --rm busybox /bin/true` (hyperfine -N, {runs} runs, "
      f"{warmup} warmup; nproc {os.cpu_count()}) =====")
print(f"  {'name':<24} {'median ms':>10} {'mean ± σ ms':>16} {'min ms':>8}   strata/that")
for r in rs:
    ratio = "" if r is rs[0] else f"strata vs {r['command']}: {strata / r['median']:.2f}"
    print(f"  {r['command']:<24} {r['median']*1000:10.2f} {r['mean']*1000:9.2f} ± {r['stddev']*1000:5.2f}"
          f" {r['min']*1000:8.2f}   {ratio}")
print(f"  podman flags: {podman_flags}")
print("target: strata no slower than crun with its overlay mount (ratio <= 1.0)")
crun = [r for r in rs if r["command"] == "crun+overlay"]
if crun:
    ratio = strata / crun[0]["median"]
    print(f"  -> strata / crun+overlay = {ratio:.2f}  [{'ok' if ratio <= 1.0 else 'OVER TARGET'}]")
else:
    print("  -> crun+overlay was skipped, no verdict")
EOF
