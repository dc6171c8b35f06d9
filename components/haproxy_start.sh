#!/bin/sh
# Start HAProxy with the peers that resolve: a replica that is not scheduled yet must not keep this one
# from starting (HAProxy resolves peer addresses once, at start). Every other line is used as rendered.
set -eu
src="${HAPROXY_CFG:-/usr/local/etc/haproxy/haproxy.cfg}"
run="${HAPROXY_RUN_DIR:-/tmp}"
wait_s="${PEER_WAIT_SECONDS:-10}"
out="$run/haproxy.cfg"
: > "$out"
while IFS= read -r line; do
  case "$line" in
    "    peer "*)
      addr=$(echo "$line" | awk '{print $3}')
      host=${addr%:*}
      i=0
      until getent hosts "$host" >/dev/null 2>&1 || [ "$i" -ge "$wait_s" ]; do i=$((i + 1)); sleep 1; done
      if getent hosts "$host" >/dev/null 2>&1; then echo "$line" >> "$out"; else echo "# unresolved: $line" >> "$out"; fi
      ;;
    *) printf '%s\n' "$line" >> "$out" ;;
  esac
done < "$src"
exec haproxy -W -db -f "$out" -L "${PEER_NAME:-$(hostname)}"
