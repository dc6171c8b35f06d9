#!/bin/sh
# The reloader sidecar: users, passwords, ACLs and the server certificate applied to the running mosquitto
# without a restart, so its clients and their sessions stay.
#
# The kubelet rewrites a Secret volume in place when the Secret changes (whole-volume mounts only, never subPath).
# Every few seconds this compares what SIGHUP would re-read with what mosquitto was last given
# (auth-files.sh); on a difference that holds for a second it copies the password file and ACLs again and sends
# SIGHUP. mosquitto 2.0 then re-reads the password file and every ACL, reloads each TLS listener's certificate and
# key, and checks every connected client again: one whose user is gone or whose password changed is disconnected,
# the others keep their connection (eclipse/mosquitto v2.0.20 src/loop.c:231-240, src/mosquitto.c:191-209,
# src/net.c:470-506, src/security_default.c:1088-1285). The CA file, listeners and bridges are not reloaded; the
# pod template carries their hashes, so those changes roll the pods instead.
#
# The pod shares one process namespace (shareProcessNamespace), so mosquitto's pid file in the shared run
# directory names a process this container, running as the same user, may signal.
set -u
config="${MOSQUITTO_CONFIG_DIR:-/mosquitto/config}"
. "$config/auth-files.sh"
interval="${RELOAD_INTERVAL_SECONDS:-5}"

# An ACL line mosquitto cannot parse makes a reload switch ACL checks OFF until the next good reload (it logs
# the error and keeps running with no ACL callback: src/security_default.c:627-630 and 104-123, src/security.c:698-752
# at v2.0.20), so such a file is never handed over. Rendered ACLs only hold these forms.
acl_files_parse() {
  for file in "$auth/acl" "$auth"/*.acl; do
    [ -r "$file" ] || continue
    if grep -Eqv '^[[:space:]]*(#.*)?$|^(user|topic|pattern) [^[:space:]]' "$file"; then
      echo "[reload] $file has a line mosquitto would refuse (it would then stop checking ACLs); not reloading" >&2
      return 1
    fi
  done
}

# Whether the process handles SIGHUP yet: bit 0 of the SigCgt mask in /proc/<pid>/status, the signals "caught"
# (man-pages 5.13 man5/proc.5:2714-2717); SIGHUP's default action is Term (man7/signal.7:385). mosquitto
# installs its signal handlers only after loading its database (v2.0.11 src/mosquitto.c:505, 550), and until then SIGHUP's default action ends it
# (the backup sidecar measured the window on 2.0.11: 0.6 s with a 296 MB database; backup/agent.py _catches).
catches_hup() {
  while read -r key value _; do
    if [ "$key" = "SigCgt:" ]; then
      last=${value#"${value%?}"}
      [ $(( 0x$last & 1 )) -eq 1 ]
      return
    fi
  done < "/proc/$1/status"
  return 1
}

mosquitto_pid() {
  pid=$(cat "$run/mosquitto.pid" 2>/dev/null) || return 1
  case "$pid" in '' | *[!0-9]*) return 1 ;; esac
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [ "$comm" = mosquitto ] && catches_hup "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

while :; do
  date +%s > "$run/reloader-heartbeat"  # the probes' proof that this loop runs
  sleep "$interval"
  applied=$(cat "$run/applied-fingerprint" 2>/dev/null) || continue  # mosquitto has not started yet
  seen=$(auth_fingerprint)
  [ "$seen" = "$applied" ] && continue
  sleep 1  # a writer that is not atomic (the kubelet is) has finished
  [ "$(auth_fingerprint)" = "$seen" ] || continue
  acl_files_parse || continue
  pid=$(mosquitto_pid) || { echo "[reload] files changed but mosquitto is not running (or still starting); tried again in ${interval} s" >&2; continue; }
  if ! copy_auth_files; then
    echo "[reload] could not copy the password file and ACLs into $run; mosquitto keeps the previous ones" >&2
    continue
  fi
  if kill -HUP "$pid"; then
    echo "[reload] users, ACLs or server certificate changed: SIGHUP sent to mosquitto (pid $pid)"
  fi
done
