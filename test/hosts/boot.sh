#!/usr/bin/env bash
# PID 1 of a test host's new PID, mount and network namespaces (see host.ts): mounts the
# host's root (an overlay over the pristine root), starts the IMDS and package server in the
# namespace, then becomes systemd. Everything here dies with the namespace.
set -euo pipefail
root=$1 lower=$2 layer=$3 share=$4 node=$5 server=$6
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$layer/upper,workdir=$layer/work" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
mkdir -p "$root/mnt/test"
mount --bind "$share" "$root/mnt/test"
ip link set lo up
ip addr add 169.254.169.254/32 dev lo
"$node" "$server" "$share" </dev/null >>"$share/server.log" 2>&1 &
exec chroot "$root" /lib/systemd/systemd --system --unit=multi-user.target </dev/null >>"$share/console.log" 2>&1
