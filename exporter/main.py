"""Command line and lifecycle: connect (and keep reconnecting) to the broker, serve /metrics, stop on SIGTERM."""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from prometheus_client import CollectorRegistry, start_http_server

from .collector import SysState
from .credentials import CredentialFile

DEFAULT_PORT = 9234
"""The exporter's HTTP port (/metrics), named `metrics` in the pod."""


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mosquitto-exporter", description=__doc__)
    parser.add_argument("--broker", default="127.0.0.1:1880", help="HOST:PORT of the broker (default: the pod's "
                        "loopback health listener)")
    parser.add_argument("--listen", default=f"0.0.0.0:{DEFAULT_PORT}", help="ADDRESS:PORT to serve /metrics on")
    parser.add_argument("--stale-after", type=float, default=30.0,
                        help="seconds without a $SYS heartbeat before the values are withdrawn (3 x sys_interval)")
    parser.add_argument("--cafile", type=Path, help="verify the broker's TLS certificate against this CA "
                        "(TLS is used when given; the host name is checked)")
    parser.add_argument("--username", help="MQTT user name, when the listener needs one")
    parser.add_argument("--password-file", type=Path, help="file holding the password (a mounted Secret)")
    parser.add_argument("--credential", action="append", default=[], type=CredentialFile.parse,
                        metavar="NAME=PATH|NAME=@UNIXTIME", help="report when this certificate or token expires")
    parser.add_argument("--reconnect-max", type=float, default=10.0, help="longest wait between reconnects (s)")
    return parser.parse_args(argv)


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"mosquitto-exporter: {what} {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def build_client(args: argparse.Namespace, state: SysState) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"mosquitto-exporter-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv311, clean_session=True)
    if args.cafile:
        # verified: CERT_REQUIRED and the broker's host name checked (paho's tls_insecure stays False)
        client.tls_set(ca_certs=str(args.cafile), cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if args.username:
        password = args.password_file.read_text().strip() if args.password_file else None
        client.username_pw_set(args.username, password)
    client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(args.reconnect_max)))

    def on_connect(cl, _userdata, _flags, reason, _props):
        if reason.is_failure:
            print(f"mosquitto-exporter: broker refused the connection: {reason}", file=sys.stderr, flush=True)
            return
        state.connected()
        cl.subscribe("$SYS/#", qos=0)

    def on_disconnect(_cl, _userdata, _flags, reason, _props):
        state.disconnected()
        print(f"mosquitto-exporter: disconnected from the broker ({reason}); reconnecting", file=sys.stderr,
              flush=True)

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = lambda _cl, _ud, msg: state.message(msg.topic, msg.payload)
    return client


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    host, port = _host_port(args.broker, "--broker")
    listen_host, listen_port = _host_port(args.listen, "--listen")
    state = SysState(args.stale_after, args.credential)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(state)
    server, _thread = start_http_server(listen_port, addr=listen_host, registry=registry)
    client = build_client(args, state)
    client.connect_async(host, port, keepalive=30)
    client.loop_start()                         # paho's thread connects, and reconnects after every loss
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"mosquitto-exporter: reading {host}:{port}, serving http://{listen_host}:{listen_port}/metrics",
          file=sys.stderr, flush=True)
    stop.wait()
    client.disconnect()
    client.loop_stop()
    server.shutdown()
    return 0
