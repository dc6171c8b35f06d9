#!/bin/sh
# HAProxy for one frontend replica, with its peers kept resolved.
#
# HAProxy resolves the address of a `peer` line once, when it parses its configuration (peers support neither
# `resolvers` nor `init-addr`: doc/configuration.txt:3803-3806 of HAProxy 2.8, tag v2.8.0). So this script writes
# the peers as addresses: a replica that does not resolve yet is left out (commented) instead of keeping this one
# from starting, and every PEER_RECHECK_SECONDS the peer names are resolved again. When a peer appears,
# disappears or moves, the configuration is rewritten, checked (haproxy -c) and HAProxy reloaded.
#
# HAProxy runs in master-worker mode (-W) as our child. On SIGUSR2 the master re-executes itself with -sf and
# the old workers' pids, parses the configuration again and forks new workers (doc/management.txt:600-604).
# During that soft restart the old process connects to the new one through the local peer address and pushes
# every stick-table entry to it (doc/configuration.txt:3720-3723 and 3781-3782), so clients keep their broker;
# but only once its own start-up resync is finished (src/peers.c:3503-3535: otherwise it exits without
# teaching), which takes up to PEER_RESYNC_TIMEOUT, 5 s (src/peers.c:104). Hence the first re-check comes a full
# PEER_RECHECK_SECONDS (10 s) after start, and reloads are at least that far apart.
#
# SIGTERM and SIGINT (hard stop) and SIGUSR1 (graceful stop, the image's STOPSIGNAL: docker-library/haproxy
# 2.8/Dockerfile:97 at the "Update 2.8 to 2.8.16" commit 97dd996) are passed on to the master
# (doc/management.txt:580-589).
#
# Uses only what the haproxy:2.8.16 image has: it is debian:trixie-slim (2.8/Dockerfile:7) plus ca-certificates
# (line 13), and the build's tools are purged again (lines 77-88). So: dash as /bin/sh and its builtins, getent
# (libc-bin), mv, sleep and uname (coreutils); these packages are in the image's recorded package list
# (docker-library/repo-info repos/haproxy/local/2.8.26-trixie.md, the nearest recorded build of the same
# Dockerfile; none is recorded for 2.8.16). socat came to the image only after 2.8.16 (commit 3fc3329).
#
# The stats credentials come from the mounted Secret (STATS_AUTH_DIR) into HAProxy's environment, where the
# configuration reads them (the stats userlist: `user "$STATS_USER" insecure-password "$STATS_PASSWORD"`); the pod
# spec carries no secret.
#
# Hooks for tests on one machine: HAPROXY_CFG, HAPROXY_RUN_DIR, PEER_WAIT_SECONDS, PEER_RECHECK_SECONDS, and
# PEER_RESOLVER, a command printing getent-style lines ("address name...") for a name (default: getent hosts).
set -eu
src="${HAPROXY_CFG:-/usr/local/etc/haproxy/haproxy.cfg}"
run="${HAPROXY_RUN_DIR:-/tmp}"
wait_s="${PEER_WAIT_SECONDS:-10}"
recheck_s="${PEER_RECHECK_SECONDS:-10}"
resolver="${PEER_RESOLVER:-getent hosts}"
stats_dir="${STATS_AUTH_DIR:-/usr/local/etc/haproxy/stats}"
local_peer="${PEER_NAME:-$(uname -n)}"
cfg="$run/haproxy.cfg"

log() { printf '[start.sh] %s\n' "$*" >&2; }

first_line() { # the first line of file $1, with or without a final newline; fails if the file cannot be read
  value=""
  IFS= read -r value < "$1" || [ -n "$value" ]
  printf '%s' "$value"
}

STATS_USER=$(first_line "$stats_dir/username")
STATS_PASSWORD=$(first_line "$stats_dir/password")
export STATS_USER STATS_PASSWORD

resolve() { # the first address of name $1, or nothing
  set -f
  set -- $($resolver "$1" 2>/dev/null || :)
  set +f
  [ "$#" -eq 0 ] || printf '%s' "$1"
}

render() { # write $src to $1 with every peer as an address; sets $peers ("name=address ...") and $missing
  target="$1"
  peers=""
  missing=0
  : > "$target"
  while IFS= read -r line; do
    case "$line" in
      "    peer "*)
        set -f
        set -- $line # peer <name> <host>:<port> [param...]
        set +f
        name="$2" host="${3%:*}" port="${3##*:}"
        shift 3
        addr=$(resolve "$host")
        if [ -n "$addr" ]; then
          printf '    peer %s %s:%s%s\n' "$name" "$addr" "$port" "${*:+ $*}" >> "$target"
        else
          printf '    # unresolved: %s\n' "${line#    }" >> "$target"
          missing=$((missing + 1))
        fi
        peers="$peers $name=${addr:--}"
        ;;
      *) printf '%s\n' "$line" >> "$target" ;;
    esac
  done < "$src"
}

pid=""
stopping=""
forward() { # pass a stop signal on to HAProxy's master
  stopping="$1"
  [ -z "$pid" ] || kill -s "$1" "$pid" 2>/dev/null || :
}
# SIGINT goes on as SIGTERM: the master treats both as a hard stop (src/haproxy.c:825 and 829) and passes the
# signal on to its workers, which register no handler for either (src/haproxy.c:3289-3298); a shell starts a
# background command with SIGINT ignored (POSIX, "Asynchronous Lists"), and so a worker ignored SIGINT here.
trap 'forward TERM' TERM
trap 'forward TERM' INT
trap 'forward USR1' USR1

# Replicas start together (podManagementPolicy Parallel): give the others a moment to resolve.
waited=0
while :; do
  render "$cfg"
  [ -z "$stopping" ] || exit 0 # stopped before HAProxy ran
  [ "$missing" -gt 0 ] && [ "$waited" -lt "$wait_s" ] || break
  waited=$((waited + 1))
  sleep 1
done
current="$peers"
log "peers:$current"

haproxy -W -db -f "$cfg" -L "$local_peer" &
pid=$!
[ -z "$stopping" ] || forward "$stopping"

while [ -z "$stopping" ]; do
  sleep "$recheck_s" &
  sleeper=$!
  wait "$sleeper" || : # returns early when a signal is trapped
  kill "$sleeper" 2>/dev/null || :
  [ -z "$stopping" ] || break
  kill -0 "$pid" 2>/dev/null || break # HAProxy exited on its own
  render "$cfg.next"
  [ "$peers" != "$current" ] || continue
  if report=$(haproxy -c -q -f "$cfg.next" -L "$local_peer" 2>&1); then
    mv -f "$cfg.next" "$cfg"
    log "peers changed:$current ->$peers; reloading"
    current="$peers"
    kill -s USR2 "$pid" 2>/dev/null || :
  else
    log "peers changed:$peers, but the configuration does not check; keeping the running one: $report"
  fi
done

status=0
while :; do
  wait "$pid" && status=0 || status=$?
  kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
