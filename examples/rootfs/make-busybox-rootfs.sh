#!/usr/bin/env bash
# Make a minimal busybox root filesystem in DIR: /bin with busybox and its applet links,
# /etc/passwd and /etc/group, and the usual empty directories.
set -euo pipefail
dir=${1:?usage: make-busybox-rootfs.sh DIR}
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "busybox is not installed (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$dir"/{bin,etc,tmp,root,proc,sys,dev,var/log}
cp "$busybox" "$dir/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$dir/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n' > "$dir/etc/group"
chmod 1777 "$dir/tmp"
