#!/usr/bin/env bash
# The main job: build strata and the example guest, then take the example images through
# the local default store (/var/lib/strata as root, ~/.local/share/strata otherwise):
# import, list, history, run (Wasm and native), diff, commit, a detached service (logs,
# exec, stop), a Wasm HTTP service, a compose stack of both backends, build (native and
# Wasm Dockerfiles), save and load back.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
strata=./target/release/strata
examples/hello-wasm/build.sh >/dev/null
examples/hello-http/build.sh >/dev/null
examples/stack/front/build.sh >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say() { printf '\n$ %s\n' "$*"; }

# A busybox rootfs, from Debian's busybox-static (installed when missing and we are root).
if ! command -v busybox >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq busybox-static >/dev/null || true
fi
examples/rootfs/make-busybox-rootfs.sh "$work/rootfs"
tar -C "$work/rootfs" -czf "$work/busybox-rootfs.tar.gz" .

# The Wasm image: the hello-wasm guest (preview 2 component) and a data file.
mkdir -p "$work/wasm/data"
cp examples/hello-wasm/out/hello-p2.wasm "$work/wasm/hello.wasm"
echo "hello from a layered wasm image" > "$work/wasm/data/greeting.txt"
tar -C "$work/wasm" -cf "$work/hello-wasm.tar" .

say strata import -c 'CMD ["/bin/sh"]' busybox-rootfs.tar.gz example/busybox:1.0
$strata import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' "$work/busybox-rootfs.tar.gz" example/busybox:1.0
say strata import --platform wasi/wasm -c 'ENTRYPOINT ["/hello.wasm"]' hello-wasm.tar example/hello-wasm:1.0
$strata import --platform wasi/wasm -c 'ENTRYPOINT ["/hello.wasm"]' "$work/hello-wasm.tar" example/hello-wasm:1.0
say strata images
$strata images
say strata history example/busybox:1.0
$strata history example/busybox:1.0
say strata run --name hello -e GREETING=hi example/hello-wasm:1.0 hello world
$strata rm -f hello >/dev/null 2>&1 || true
$strata run --name hello -e GREETING=hi example/hello-wasm:1.0 hello world
say strata run --rm example/hello-wasm:1.0 cat /data/greeting.txt
$strata run --rm example/hello-wasm:1.0 cat /data/greeting.txt
say 'strata run --rm example/hello-wasm:1.0 exit 7; echo "exit status $?"'
$strata run --rm example/hello-wasm:1.0 exit 7 || echo "exit status $?"
say "strata run --rm example/busybox:1.0 sh -c 'echo hello from \$(hostname), pid \$\$; id'"
$strata run --rm example/busybox:1.0 sh -c 'echo hello from $(hostname), pid $$; id'
say "strata run --name native -u nobody -w /srv example/busybox:1.0 sh -c 'pwd; touch /tmp/native-was-here'"
$strata rm -f native >/dev/null 2>&1 || true
$strata run --name native -u nobody -w /srv example/busybox:1.0 sh -c 'pwd; touch /tmp/native-was-here'
say strata ps -a
$strata ps -a
say strata diff native
$strata diff native
$strata rm native >/dev/null
say strata diff hello
$strata diff hello
say strata commit hello example/hello-wasm:committed
$strata commit hello example/hello-wasm:committed
$strata rm hello >/dev/null
say strata run --rm example/hello-wasm:committed cat /tmp/hello.txt
$strata run --rm example/hello-wasm:committed cat /tmp/hello.txt
say "strata run -d --name svc example/busybox:1.0 sh -c 'trap \"exit 0\" TERM; i=0; while :; do echo tick \$i; i=\$((i+1)); sleep 0.2; done'"
$strata rm -f svc >/dev/null 2>&1 || true
$strata run -d --name svc example/busybox:1.0 sh -c 'trap "exit 0" TERM; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done'
sleep 1
say strata ps
$strata ps
say strata logs --tail 2 svc
$strata logs --tail 2 svc
say "strata exec svc sh -c 'echo in exec: pid \$\$ in \$(hostname)'"
$strata exec svc sh -c 'echo in exec: pid $$ in $(hostname)'
say strata stop svc
$strata stop svc
say "strata inspect -f '{{.State.Status}} {{.State.ExitCode}}' svc"
$strata inspect -f '{{.State.Status}} {{.State.ExitCode}}' svc
$strata rm svc >/dev/null
# A Wasm HTTP service: the hello-http component (it exports wasi:http/incoming-handler),
# built into a Wasm image, run detached with a published port, answered per request by a
# fresh instance. As root, `-p` puts it on the bridge: done in a network namespace of its
# own here, so the example leaves no bridge or firewall rule on this machine; without
# privileges it listens on the host port itself.
say strata build --platform wasi/wasm -t example/hello-http:1.0 examples/hello-http
$strata build --platform wasi/wasm -t example/hello-http:1.0 examples/hello-http
inns=()
if [ "$(id -u)" = 0 ]; then
    unshare -n sleep infinity & netns_holder=$!
    trap 'kill $netns_holder 2>/dev/null; rm -rf "$work"' EXIT
    until [ "$(readlink /proc/$netns_holder/ns/net)" != "$(readlink /proc/self/ns/net)" ]; do sleep 0.01; done
    inns=(nsenter --net=/proc/$netns_holder/ns/net)
    "${inns[@]}" ip link set lo up
fi
$strata rm -f hello-http >/dev/null 2>&1 || true
say strata run -d --name hello-http -e GREETING=Hi -p 127.0.0.1:18080:8080 example/hello-http:1.0
"${inns[@]}" $strata run -d --name hello-http -e GREETING=Hi -p 127.0.0.1:18080:8080 example/hello-http:1.0
say curl -s 127.0.0.1:18080/hello
"${inns[@]}" curl -s --retry 5 --retry-connrefused --retry-delay 0 127.0.0.1:18080/hello
say strata logs hello-http
$strata logs hello-http
say strata stop hello-http
"${inns[@]}" $strata stop hello-http >/dev/null
$strata rm hello-http >/dev/null
# A stack of both backends (examples/stack/compose.yaml): a Wasm wasi:http front end that
# calls a native busybox httpd by its service name; the backend counts visits in a named
# volume, which `down` keeps and `down -v` removes. Its networks are bridges: as root, in
# the namespace above; user networks without root are not there yet.
if [ "$(id -u)" = 0 ]; then
    stack=(-f examples/stack/compose.yaml)
    say strata compose -f examples/stack/compose.yaml up -d
    "${inns[@]}" $strata compose "${stack[@]}" up -d
    say strata compose -f examples/stack/compose.yaml ps
    "${inns[@]}" $strata compose "${stack[@]}" ps
    say curl -s 127.0.0.1:18090/ '(twice)'
    "${inns[@]}" curl -s --retry 5 --retry-connrefused --retry-delay 0 127.0.0.1:18090/
    "${inns[@]}" curl -s 127.0.0.1:18090/
    say strata compose -f examples/stack/compose.yaml down -v
    "${inns[@]}" $strata compose "${stack[@]}" down -v
fi

say strata build -t example/webapp:1.0 examples/webapp
$strata build -t example/webapp:1.0 examples/webapp
say strata run --rm example/webapp:1.0
$strata run --rm example/webapp:1.0
say strata history example/webapp:1.0
$strata history example/webapp:1.0
say strata build --platform wasi/wasm -t example/hello-wasm:built examples/hello-wasm
$strata build --platform wasi/wasm -t example/hello-wasm:built examples/hello-wasm
say strata run --rm example/hello-wasm:built cat /etc/built-by.txt
$strata run --rm example/hello-wasm:built cat /etc/built-by.txt
echo
say strata save -o examples.tar example/busybox:1.0 example/hello-wasm:1.0 '&&' strata load -i examples.tar
$strata save -o "$work/examples.tar" example/busybox:1.0 example/hello-wasm:1.0
$strata load -i "$work/examples.tar"
say strata system df
$strata system df
