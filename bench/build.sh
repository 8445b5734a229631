#!/usr/bin/env bash
# Build benchmark: `strata build` vs `buildah bud --layers` (Debian's buildah) on the same
# Dockerfile and context, in one run, printing medians and ratios:
#
#   cold       a first build into an empty store (the base image already there)
#   unchanged  a rebuild with nothing changed (target: strata >= 10x faster than buildah)
#   one-file   a rebuild after one file of the last COPY changed
#
# The Dockerfile has the classic shape: base (busybox-static rootfs), WORKDIR, COPY a
# requirements file, RUN an "install" step, COPY the rest (200 files), CMD. Both builders
# use kernel overlayfs and run RUN with the host network. Needs root, buildah, busybox.
# RUNS (default 5) sets the iterations; STRATA=path uses a prebuilt binary.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
runs="${RUNS:-5}"
[ "$(id -u)" = 0 ] || { echo "build.sh: run as root" >&2; exit 1; }
for tool in buildah busybox python3; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is required" >&2; exit 1; }
done

if [ -z "${STRATA:-}" ]; then
    echo "== building strata (release)" >&2
    cargo build --release --locked -p strata >&2
    target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    STRATA="$target_dir/release/strata"
fi

work="$(mktemp -d /var/tmp/strata-build-bench.XXXXXX)"
cleanup() {
    # buildah leaves overlay mounts of its layers behind in its root.
    grep " $work/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The base image, in a strata archive that buildah reads as docker-archive.
examples/rootfs/make-busybox-rootfs.sh "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
seed="$work/seed"
"$STRATA" --root "$seed" import -c 'CMD ["/bin/sh"]' "$work/rootfs.tar" localhost/bench-base:1 >/dev/null
"$STRATA" --root "$seed" save -o "$work/base.tar" localhost/bench-base:1

ctx="$work/ctx"
mkdir -p "$ctx/src"
cat >"$ctx/Dockerfile" <<'EOF'
FROM localhost/bench-base:1
WORKDIR /app
COPY requirements.txt .
RUN mkdir -p deps && for p in $(cat requirements.txt); do echo "installed $p" > deps/$p; done
COPY . .
CMD ["sh", "-c", "ls /app/src | wc -l"]
EOF
printf 'flask\nrequests\nnumpy\n' >"$ctx/requirements.txt"
for i in $(seq 1 200); do head -c 2048 /dev/urandom | base64 >"$ctx/src/file$i.txt"; done

# Fresh stores for one iteration, with the base image in them (not timed).
fresh_strata() { rm -rf "$work/s"; cp -a "$seed" "$work/s"; }
buildah_flags() { echo --root "$work/b/root" --runroot "$work/b/run" --storage-driver overlay; }
fresh_buildah() {
    grep " $work/b/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$work/b"
    buildah $(buildah_flags) pull -q "docker-archive:$work/base.tar" >/dev/null
}
strata_build() { "$STRATA" --root "$work/s" build -q -t bench:1 "$ctx" >/dev/null; }
buildah_build() {
    # crun 1.8 refuses this host's hybrid cgroup layout; runc works as is.
    buildah $(buildah_flags) bud --layers -q --network host --runtime runc \
        --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 -t bench:1 "$ctx" >/dev/null
}

# time_ms CMD…: wall time of one run in milliseconds.
time_ms() {
    local start end
    start=$(date +%s%N)
    "$@" || { echo "build.sh: $* failed" >&2; kill $$; exit 1; }
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print m}'; }

declare -A results
for tool in strata buildah; do
    cold=() unchanged=() onefile=()
    for _ in $(seq 1 "$runs"); do
        "fresh_$tool"
        printf 'v1\n' >"$ctx/src/file1.txt"
        cold+=("$(time_ms "${tool}_build")")
        unchanged+=("$(time_ms "${tool}_build")")
        printf 'v2 %s\n' "$RANDOM" >"$ctx/src/file1.txt"
        onefile+=("$(time_ms "${tool}_build")")
    done
    results[$tool,cold]=$(printf '%s\n' "${cold[@]}" | median)
    results[$tool,unchanged]=$(printf '%s\n' "${unchanged[@]}" | median)
    results[$tool,onefile]=$(printf '%s\n' "${onefile[@]}" | median)
done

# The images agree: both run the same CMD on the same files.
ours=$("$STRATA" --root "$work/s" run --rm bench:1)
echo "strata image: CMD prints $ours (200 expected)" >&2

printf '\n%-10s %12s %12s %14s\n' scenario "strata ms" "buildah ms" "buildah/strata"
for s in cold unchanged onefile; do
    a=${results[strata,$s]} b=${results[buildah,$s]}
    printf '%-10s %12s %12s %14s\n' "$s" "$a" "$b" "$(python3 -c "print(f'{$b/max($a,0.001):.1f}x')")"
done
echo "target: unchanged rebuild >= 10x faster than buildah (median of $runs runs)"
