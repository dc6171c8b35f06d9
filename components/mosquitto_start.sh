#!/bin/sh
# Start mosquitto with its password file and ACLs copied into a private directory first (auth-files.sh says why;
# the reloader sidecar, reload.sh, copies them again when the mounted Secret changes).
#
# Open files: every client is a descriptor, and mosquitto 2.0 never raises its own limit (no setrlimit or
# getrlimit anywhere in eclipse/mosquitto v2.0.20 src/ or lib/); at the soft limit it accepts a connection and
# closes it at once (src/net.c:126-151). Under Kubernetes the limit is the runtime's: containerd's CRI drops the
# default spec's RLIMIT_NOFILE 1024:1024 (containerd v2.0.0 pkg/oci/spec.go:180-186, removed by
# internal/cri/opts/spec_opts.go:164-165 via internal/cri/server/container_create.go:646-647, unless a
# base_runtime_spec sets one), so the container inherits containerd's own limit. containerd 1.7 set
# LimitNOFILE=infinity (containerd.service:35 at v1.7.34); since v2.0.0 (commit 3ca39ef) the unit leaves it to
# systemd's default of 1024 soft / 524288 hard. Go raises the soft limit inside containerd, the shim and runc,
# but gives each child the original back (golang/go src/syscall/rlimit.go init; syscall.Exec and forkExec
# restore it), and runc sets no NOFILE when the spec has none (libcontainer/init_linux.go:228-229 and 656-666
# at v1.2.0): the container starts with a soft limit of 1024. A pod cannot ask for more
# (kubernetes/kubernetes#3595). Raising the soft limit to the hard one needs no privilege; the image's
# /bin/sh is busybox ash (docker/2.0/Dockerfile:1, alpine:3.20), whose ulimit builtin (busybox 1.36.1
# shell/ash.c:10245, shell/shell_common.c:529-690) sets only the soft limit with -S (lines 671-674), as dash's.
# Quiet unless something is wrong: then one line on stderr each, and mosquitto starts anyway.
set -eu
config="${MOSQUITTO_CONFIG_DIR:-/mosquitto/config}"
. "$config/auth-files.sh"
copy_auth_files

soft=$(ulimit -S -n 2>/dev/null) || soft=""
hard=$(ulimit -H -n 2>/dev/null) || hard=""
if [ -n "$hard" ] && [ "$soft" != "$hard" ]; then
  if ulimit -S -n "$hard" 2>/dev/null; then
    soft=$hard
  else
    echo "[start.sh] could not raise the open-file limit from ${soft:-?} to $hard; mosquitto starts with ${soft:-?}" >&2
  fi
fi
# the connections the listeners admit together (each `max_connections`), against the descriptors mosquitto may open
admitted=0
if [ -r "$1" ]; then
  while read -r key value _ || [ -n "${key:-}" ]; do
    case "$key" in
      max_connections) case "$value" in '' | *[!0-9]*) ;; *) admitted=$((admitted + value)) ;; esac ;;
    esac
  done < "$1"
fi
case "$soft" in
  '' | *[!0-9]*) ;;  # unknown or unlimited
  *) if [ "$admitted" -gt "$soft" ]; then
       echo "[start.sh] the listeners admit $admitted connections (max_connections) but the open-file limit is $soft: mosquitto refuses connections beyond about $soft" >&2
     fi ;;
esac
exec mosquitto -c "$1"
