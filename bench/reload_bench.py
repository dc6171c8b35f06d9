"""Reload benchmark: what a routine change costs when it is applied without a restart, measured in one run.

1. Change to effect, on the dev estate booted on 127.0.0.1 (real mosquitto, the rendered reloader sidecar under
   busybox ash): clients connected, then the Secret volumes refreshed as the kubelet does (a user added, one
   removed, the server certificate renewed, tests/live_change.py). Reported: seconds until the new user logs in
   (the reloader compares every 5 s and lets the files settle 1 s), whether the removed one is refused, and how
   many of the clients that stayed were disconnected (target 0).
2. The broker's pause during a reload: on SIGHUP mosquitto re-checks every connected password client against the
   new password file (eclipse/mosquitto v2.0.20 src/security_default.c:1250-1256, the password kept since CONNECT,
   src/handle_connect.c:864), one PBKDF2 each, on its only thread. N clients are connected with one iteration
   count, a connected client pings back to back, and the longest ping round trip during the reload is what every
   client waited.
Not in the local figure: the kubelet's own delay, up to its sync period (1 minute by default) after the Secret
changed.

Run from the repository root:  python3 -m bench.reload_bench [--clients N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.credential_bench import PASSWORD, Pinger, connack_code, password_broker, connect_packet, dial, one_connect  # noqa: E402
from mqtt_estate.components import credentials as model  # noqa: E402
from mqtt_estate.components.passwords import deterministic_salt, hash_password  # noqa: E402
from mqtt_estate.estate.local import LocalEstate  # noqa: E402
from mqtt_estate.estate.render import render  # noqa: E402
from mqtt_estate.estate.secret_volumes import refresh_secret_volumes  # noqa: E402
from tests.live_change import (ADDED, REMOVED, STAYING, accepted, changed_stack, credentials,  # noqa: E402
                               passwords, quiet, wait_for, watch)

COUNTS = (model.GENERATED_ITERATIONS, model.SUPPLIED_ITERATIONS)
TARGET_DISCONNECTS = 0
TARGET_SECONDS = "<= 7 s"
"""The reloader's interval (5 s), its settling second, and a second for the broker and the client's login."""


def change_to_effect(clients_per_user: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        state = tmp / "state"
        changed = tmp / "Pulumi.dev.yaml"
        changed.write_text(changed_stack((ROOT / "Pulumi.dev.yaml").read_text()))
        before = render("dev", out=tmp / "before", state_dir=state)
        after = render("dev", changed, out=tmp / "after", state_dir=state)
        with LocalEstate(before, tmp / "local") as local:
            conn = json.loads(local.write_connection_file().read_text())
            old = credentials(conn)
            staying = [watch(conn, listener, user, old[user]) for user in STAYING for listener in ("mqtt", "mqtts")
                       for _ in range(clients_per_user)]
            began = time.monotonic()
            refresh_secret_volumes(local.brokers, before.objects, after.objects)
            took = wait_for(lambda: accepted(conn, "mqtt", ADDED, passwords(after)[ADDED]), 30, step=0.1)
            refused = not accepted(conn, "mqtt", REMOVED, old[REMOVED])
            quiet(2)
            dropped = sum(1 for c in staying if c.disconnects or c.connects != 1)
            for client in staying:
                client.close()
            restarted = local.brokers[0].process.poll() is not None
            return {"seconds": took, "refused": refused, "clients": len(staying), "dropped": dropped,
                    "restarted": restarted, "wall": time.monotonic() - began}


def reload_pause(iterations: int, clients: int) -> float:
    """Longest ping round trip (ms) of a connected client while mosquitto reloads with `clients` password
    clients connected, their hashes at `iterations`."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        directory.chmod(0o755)  # run as root, mosquitto drops to its own user, which must read these files
        (directory / "passwd").write_text(
            f"u:{hash_password(PASSWORD, deterministic_salt('bench', 'u'), iterations)}\n")
        port, proc = password_broker(directory)
        socks = []
        try:
            for _ in range(100):
                try:
                    one_connect(port, "u", PASSWORD)
                    break
                except OSError:
                    time.sleep(0.05)
            for i in range(clients + 1):
                sock = dial(port)
                sock.sendall(connect_packet(f"c{i}", "u", PASSWORD))
                if connack_code(sock) != 0:
                    raise RuntimeError("refused")
                socks.append(sock)
            with Pinger(socks[0]) as pinger:
                time.sleep(0.2)
                os.kill(proc.pid, signal.SIGHUP)
                time.sleep(max(1.0, clients * iterations / 1e6))  # past the longest pause expected
            return pinger.longest_ms
        finally:
            for sock in socks:
                sock.close()
            proc.terminate()
            proc.wait(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=200, help="connected password clients during a reload")
    parser.add_argument("--per-user", type=int, default=5, help="connections per staying user and listener")
    args = parser.parse_args()

    effect = change_to_effect(args.per_user)
    print("Change to effect (dev estate, user added + user removed + server certificate renewed)")
    print(f"| {'measure':<44} | {'result':>10} | {'target':>10} |")
    print(f"|{'-' * 46}|{'-' * 12}|{'-' * 12}|")
    seconds = f"{effect['seconds']:.1f} s" if effect["seconds"] is not None else "never"
    print(f"| {'new user accepted after':<44} | {seconds:>10} | {TARGET_SECONDS:>10} |")
    print(f"| {'removed user refused':<44} | {str(effect['refused']).lower():>10} | {'true':>10} |")
    print(f"| {'connected clients that stayed, disconnected':<44} | "
          f"{str(effect['dropped']) + ' of ' + str(effect['clients']):>10} | {TARGET_DISCONNECTS:>10} |")
    print(f"| {'broker restarted':<44} | {str(effect['restarted']).lower():>10} | {'false':>10} |")
    print()
    print(f"Broker pause during a reload, {args.clients} password clients connected (longest ping round trip)")
    print(f"| {'PBKDF2 iterations':>17} | {'pause':>10} |")
    print(f"|{'-' * 19}|{'-' * 12}|")
    for iterations in COUNTS:
        print(f"| {iterations:>17} | {reload_pause(iterations, args.clients):>7.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
