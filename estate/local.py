"""`estate up --local`: boot the rendered brokers as real mosquitto processes on 127.0.0.1.

Each pod becomes a directory holding exactly the files its volumes would hold; mosquitto.conf is changed
only in listener addresses/ports and mount paths. Every process started here is stopped on exit.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from estate.manifests import pod_files, workloads
from estate.mosquitto_files import parse_listeners, rewrite_conf
from estate.output import write_file
from estate.render import Render


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout} s")


@dataclass
class LocalBroker:
    pod: str
    directory: Path
    process: subprocess.Popen
    listeners: list[dict] = field(default_factory=list)
    health_port: int = 0


def _mosquitto_container(workload: dict) -> dict | None:
    for container in workload["spec"]["template"]["spec"]["containers"]:
        if container.get("command", [""])[0] == "mosquitto":
            return container
    return None


def _hand_to_mosquitto_user(directory: Path) -> None:
    """Run as root, mosquitto drops to the `mosquitto` user, which must be able to read its files."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    os.chown(directory.parent, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(directory):
        for name in [root, *[os.path.join(root, d) for d in dirs], *[os.path.join(root, f) for f in files]]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


class LocalEstate:
    """Context manager owning every process of a local estate."""

    def __init__(self, rendered: Render, workdir: Path):
        self.rendered = rendered
        self.workdir = workdir
        self.brokers: list[LocalBroker] = []
        # Pod directories live in a fresh directory under the system temp dir: when run as root, mosquitto
        # drops to its own user, which must be able to reach them (a 0700 parent such as pytest's would not do).
        self.pods_dir: Path | None = None

    def __enter__(self) -> "LocalEstate":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        self.pods_dir = Path(tempfile.mkdtemp(prefix="mqtt-estate-pods-"))
        for workload in workloads(self.rendered.objects):
            container = _mosquitto_container(workload)
            if container is None:
                continue
            files = pod_files(self.rendered.objects, workload)
            conf_path = container["command"][container["command"].index("-c") + 1]
            for ordinal in range(int(workload["spec"].get("replicas", 1))):
                self._start_pod(f"{workload['metadata']['name']}-{ordinal}", container, files, conf_path)

    def _start_pod(self, pod: str, container: dict, files: dict, conf_path: str) -> None:
        directory = self.pods_dir / pod
        mounts = {m["mountPath"].rstrip("/"): str(directory / m["mountPath"].strip("/"))
                  for m in container.get("volumeMounts", [])}
        for mount_path, local in mounts.items():
            Path(local).mkdir(parents=True, exist_ok=True)
        for path, (content, secret) in files.items():
            write_file(directory / path.lstrip("/"), content, secret)
        conf = files[conf_path][0]
        listeners = parse_listeners(conf)
        ports = {lst.port: free_port() for lst in listeners}
        local_conf = directory / "local-mosquitto.conf"
        write_file(local_conf, rewrite_conf(conf, ports, mounts))
        _hand_to_mosquitto_user(directory)
        log = directory / "mosquitto.log"
        with open(log, "w") as handle:
            proc = subprocess.Popen(["mosquitto", "-c", str(local_conf)], stdout=handle, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        broker = LocalBroker(pod, directory, proc)
        self.brokers.append(broker)
        # mosquitto opens every listener before it serves any, so the plain health listener tells readiness
        # without a TLS handshake that would only add errors to the log.
        health = next(lst for lst in listeners if lst.bind == "127.0.0.1")
        wait_for_port(ports[health.port], proc, log)
        for lst in listeners:
            if lst.bind == "127.0.0.1":
                broker.health_port = ports[lst.port]
                continue
            scheme = ("wss" if lst.tls else "ws") if lst.protocol == "websockets" else ("mqtts" if lst.tls else "mqtt")
            broker.listeners.append({"name": lst.name, "url": f"{scheme}://127.0.0.1:{ports[lst.port]}",
                                     "host": "127.0.0.1", "port": ports[lst.port], "pod_port": lst.port,
                                     "transport": "websockets" if lst.protocol == "websockets" else "tcp",
                                     "tls": lst.tls, "mtls": lst.mtls,
                                     "allow_anonymous": lst.settings.get("allow_anonymous") == "true"})

    def stop(self) -> None:
        for broker in self.brokers:
            if broker.process.poll() is None:
                broker.process.terminate()
        for broker in self.brokers:
            try:
                broker.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                broker.process.kill()
                broker.process.wait()
        if self.pods_dir is not None:
            shutil.rmtree(self.pods_dir, ignore_errors=True)

    def write_connection_file(self) -> Path:
        """Everything a client needs: listener URLs, CA, a demo client certificate and a credentials file."""
        registry = self.rendered.registry
        out = self.workdir
        certs = {}
        for obj in self.rendered.objects:
            annotations = obj["metadata"].get("annotations") or {}
            if obj["kind"] == "Secret" and "mqtt-estate.io/username" in annotations:
                user = annotations["mqtt-estate.io/username"]
                data = obj["stringData"]
                write_file(out / "clients" / f"{user}.crt", data["tls.crt"])
                write_file(out / "clients" / f"{user}.key", data["tls.key"], secret=True)
                certs[user] = {"cert": str(out / "clients" / f"{user}.crt"), "key": str(out / "clients" / f"{user}.key")}
        ca_file = out / "ca.crt"
        write_file(ca_file, registry.stack_outputs.get("caCertPem", ""))
        credentials = out / "credentials.json"
        write_file(credentials, json.dumps(registry.stack_outputs.get("credentials") or {}, indent=2, sort_keys=True) + "\n",
                   secret=True)
        users = registry.stack_outputs.get("users") or []
        admins = [u["name"] for u in users if u["role"] == "admin"]
        demo_cert = next((u for u in admins if u in certs), next(iter(sorted(certs)), None))
        connection = {
            "stack": self.rendered.stack,
            "ca_file": str(ca_file),
            "credentials_file": str(credentials),
            "users": users,
            "client_certificates": certs,
            "demo_client": {"username": demo_cert, **certs[demo_cert]} if demo_cert else None,
            "brokers": [{"pod": b.pod, "pid": b.process.pid, "listeners": b.listeners, "health_port": b.health_port,
                         "log": str(b.directory / "mosquitto.log")} for b in self.brokers],
            "listeners": self.brokers[0].listeners if self.brokers else [],
        }
        path = out / "connection.json"
        write_file(path, json.dumps(connection, indent=2) + "\n")
        return path
