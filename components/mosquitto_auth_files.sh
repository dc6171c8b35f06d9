# Sourced by start.sh (before mosquitto starts) and reload.sh (the reloader sidecar): the files mosquitto reads
# on SIGHUP, and their private copies.
#
# mosquitto 2.0 warns about a password or ACL file that others may read or that another user owns (eclipse/mosquitto
# v2.0.20, lib/misc_mosq.c:161-213, for the files opened in src/security_default.c:533 and :758), and Secret and
# ConfigMap volumes are owned by root. So the password file and every ACL are copied into the private run directory
# (an emptyDir both containers mount), owned by the mosquitto user, mode 0600; mosquitto.conf names the copies.
# Besides the shared acl, every `<listener>.acl` of a listener that admits anonymous clients is copied.
#
# `applied-fingerprint` in the run directory records what the running mosquitto was given: written by whoever
# copied last, read by the reloader to tell a change the kubelet made since.

config="${MOSQUITTO_CONFIG_DIR:-/mosquitto/config}"
auth="${MOSQUITTO_AUTH_DIR:-/mosquitto/auth}"
certs="${MOSQUITTO_CERT_DIR:-/mosquitto/certs}"
run="${MOSQUITTO_RUN_DIR:-/mosquitto/run}"

# What SIGHUP re-reads: the password file and ACLs (through their copies), the server certificate and key (read
# in place). Each file's name and content, in a fixed order; cksum is POSIX and a busybox applet.
auth_fingerprint() {
  for file in "$auth/passwd" "$auth/acl" "$auth"/*.acl "$certs/tls.crt" "$certs/tls.key"; do
    if [ -r "$file" ]; then
      printf '%s\n' "$file"
      cat "$file"
    fi
  done | cksum
}

copy_auth_files() {
  seen=$(auth_fingerprint)
  (
    umask 077
    for source in "$auth/passwd" "$auth/acl" "$auth"/*.acl "$config/health.acl"; do
      case "$source" in "$auth/*.acl") continue ;; esac  # no listener ACLs: the pattern matched nothing
      target="$run/$(basename "$source")"
      cat "$source" > "$target.new"
      mv "$target.new" "$target"
    done
    printf '%s\n' "$seen" > "$run/applied-fingerprint.new"
    mv "$run/applied-fingerprint.new" "$run/applied-fingerprint"
  )
}
