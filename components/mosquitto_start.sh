#!/bin/sh
# Start mosquitto with its password file and ACLs copied into a private directory first. mosquitto 2.0 warns
# about a password or ACL file that others may read or that another user owns (eclipse/mosquitto v2.0.20,
# lib/misc_mosq.c:161-213, for the files opened in src/security_default.c:533 and :758), and Secret and
# ConfigMap volumes are owned by root. The copies are the mosquitto user's own, mode 0600. Besides the shared
# acl, every `<listener>.acl` of a listener that admits anonymous clients is copied.
set -eu
config="${MOSQUITTO_CONFIG_DIR:-/mosquitto/config}"
auth="${MOSQUITTO_AUTH_DIR:-/mosquitto/auth}"
run="${MOSQUITTO_RUN_DIR:-/mosquitto/run}"
umask 077
for source in "$auth/passwd" "$auth/acl" "$auth"/*.acl "$config/health.acl"; do
  case "$source" in "$auth/*.acl") continue ;; esac  # no listener ACLs: the pattern matched nothing
  target="$run/$(basename "$source")"
  cat "$source" > "$target.new"
  mv "$target.new" "$target"
done
exec mosquitto -c "$1"
