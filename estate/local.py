"""`estate up --local`: boot the rendered estate as real processes on 127.0.0.1.

Each pod becomes a directory holding exactly the files its volumes would hold. mosquitto.conf and
haproxy.cfg change only in listener/bind addresses and ports, bridge/server/peer addresses and mount paths, and
127.0.0.1 is exempt from the frontend's per-source limits (see _exempt_this_machine).
Every process started here is stopped on exit, on success and on failure.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .haproxy_files import frontend_ports, rewrite_haproxy_cfg
from .local_exporters import local_command, package_path
from .ports import free_port  # noqa: F401 (also this module's API: tests, the CLI)
from . import local_backup
from .haproxy_runtime import server_states
from .mounts import rewrite_paths
from .manifests import object_data, pod_files, workloads
from ..components.client_bundles import bundle_users, cert_key, key_key
from ..components.haproxy_cfg import FLOOD_TABLE, HEALTH_BACKEND, PEER_PORT, server_id
from ..components.broker import APP as BROKER_APP
from ..components.bridge_conf import CLOUD_CONF, CLOUD_DIR
from ..components.cloud_bridge import APP as BRIDGE_APP, PROVIDER_LABEL
from ..components.cloud_profiles import AWS
from ..components.haproxy_pod import APP as FRONTEND_APP
from ..components.exporter_sidecar import CONTAINER as EXPORTER
from ..components.exporter_sidecar import PORT_NAME as EXPORTER_PORT_NAME
from ..components.kube import PART_OF
from ..components.mosquitto_conf import AUTH_DIR, CERT_DIR, CONFIG_DIR, DATA_DIR, RUN_DIR, parse_listeners
from ..components.reloader_sidecar import CONTAINER as RELOADER
from ..components.backup_sidecar import CONTAINER as BACKUP, INIT_CONTAINER as RESTORE
from ..components.backup_sidecar import METRICS_PORT_NAME as BACKUP_PORT_NAME
from .mosquitto_files import rewrite_conf
from .cloud_standins import CloudStandin, acl_entries, aws_policy_documents, parse_cloud_conf, rewrite_cloud_conf
from .output import write_file
from .render import Render


PR_SET_PDEATHSIG = 1


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{log.parent.name} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{log.parent.name} did not listen on 127.0.0.1:{port} within {timeout} s")


@dataclass
class LocalProcess:
    pod: str
    kind: str
    """broker, bridge (a cloud bridge's pod), frontend, exporter (the sidecar of a broker or bridge pod), reloader
    or backup (sidecars of a broker pod)"""
    directory: Path
    process: subprocess.Popen | None = None
    listeners: list[dict] = field(default_factory=list)
    health_port: int = 0
    ports: dict[int, int] = field(default_factory=dict)
    """pod port -> local port"""
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    """The pod's labels (a PodMonitor selects by them)."""
    named_ports: dict[str, int] = field(default_factory=dict)
    """The pod's named container ports -> local port, sidecars' included (a PodMonitor names its port)."""
    containers: dict[str, str] = field(default_factory=dict)
    """Port name -> the container that declares it."""
    workload: str = ""
    """The StatefulSet the pod belongs to."""
    server_name: str = ""
    """The name clients use for this pod's listeners in the cluster (its client Service, or the pod's own DNS
    name); local clients dial 127.0.0.1 but verify the certificate against this name."""

    def container_of(self, port_name: str) -> str:
        return self.containers.get(port_name, "")


def local_workloads(objects: list[dict]) -> list[dict]:
    """The StatefulSets the components made, brokers, cloud bridges and frontends: what runs here. Anything else a
    program of your own registers is rendered, not run."""
    def made_by_us(workload: dict) -> bool:
        found = workload["metadata"].get("labels") or {}
        return found.get("app.kubernetes.io/part-of") == PART_OF \
            and found.get("app.kubernetes.io/name") in (BROKER_APP, BRIDGE_APP, FRONTEND_APP)
    return [w for w in workloads(objects) if made_by_us(w)]


def _container(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]["containers"][0]


def _replicas(workload: dict, objects: list[dict]) -> int:
    """The StatefulSet's replicas, or its autoscaler's minimum when the HPA owns the count."""
    if "replicas" in workload["spec"]:
        return int(workload["spec"]["replicas"])
    for obj in objects:
        if obj["kind"] == "HorizontalPodAutoscaler" and obj["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]:
            return int(obj["spec"]["minReplicas"])
    return 1


def _service_dns(workload: dict, objects: list[dict]) -> str:
    """The in-cluster name of the Service in front of a workload's pods (not its headless one)."""
    meta = workload["metadata"]
    labels = workload["spec"]["template"]["metadata"].get("labels") or {}
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj["kind"] == "Service" and spec.get("clusterIP") != "None" and spec.get("selector") \
                and obj["metadata"].get("namespace") == meta.get("namespace") \
                and all(labels.get(k) == v for k, v in spec["selector"].items()):
            return f"{obj['metadata']['name']}.{meta.get('namespace', 'default')}.svc.cluster.local"
    return f"{meta['name']}.{meta.get('namespace', 'default')}.svc.cluster.local"


def _broker_conf_arg(container: dict) -> str:
    """The mosquitto.conf a broker container starts with: its start script's argument (or `-c FILE`)."""
    command = list(container.get("command", [])) + list(container.get("args", []))
    if "-c" in command:
        return command[command.index("-c") + 1]
    return next(arg for arg in reversed(command) if arg.endswith(".conf"))


def _pod_dns(workload: dict, ordinal: int) -> str:
    meta = workload["metadata"]
    return f"{meta['name']}-{ordinal}.{workload['spec']['serviceName']}.{meta.get('namespace', 'default')}.svc.cluster.local"


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in container commands."""
    for key, value in env.items():
        text = text.replace(f"$({key})", value)
    return text


SIDECARS = ("exporter", "reloader", "backup")
"""Kinds of process that sit beside a pod's main process: kill and restart leave them be, as a container crash
leaves its pod's other containers running."""


def _sidecar(workload: dict, name: str, kind: str = "containers") -> dict | None:
    return next((c for c in workload["spec"]["template"]["spec"].get(kind) or () if c["name"] == name), None)


def _literal_env(container: dict) -> dict[str, str]:
    """The variables a container's spec gives a value (not those filled from a field or a Secret)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _pod_mounts(directory: Path, container: dict) -> dict[str, str]:
    """A container's mount paths -> where the pod directory holds them here."""
    return {m["mountPath"].rstrip("/"): str(directory / m["mountPath"].strip("/"))
            for m in container.get("volumeMounts", [])}


def _mosquitto_dirs(mounts: dict[str, str]) -> dict[str, str]:
    """The environment the broker's scripts (start, reload, auth-files) read their directories from."""
    return {"MOSQUITTO_CONFIG_DIR": mounts[CONFIG_DIR], "MOSQUITTO_AUTH_DIR": mounts[AUTH_DIR],
            "MOSQUITTO_CERT_DIR": mounts.get(CERT_DIR, CERT_DIR), "MOSQUITTO_RUN_DIR": mounts[RUN_DIR]}


def _ash() -> list[str]:
    """The image's shell is busybox ash: run the pod's scripts with it when this machine has busybox."""
    return ["busybox", "sh"] if shutil.which("busybox") else ["/bin/sh"]


def _mosquitto_user() -> pwd.struct_passwd | None:
    """When we are root, brokers run as the `mosquitto` user from the start (as in the pod, never as root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        return None


def _hand_to_mosquitto_user(directory: Path) -> None:
    entry = _mosquitto_user()
    if entry is None:
        return
    for root, dirs, files in os.walk(directory):
        for name in [root, *[os.path.join(root, d) for d in dirs], *[os.path.join(root, f) for f in files]]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


def _owned_like_volume_files(directory: Path, files: dict) -> None:
    """ConfigMap and Secret files as the kubelet leaves them: owned by root, group fsGroup, mode 0440 (the
    components' defaultMode), so mosquitto's checks on its password and ACL files meet what they meet in a pod."""
    entry = _mosquitto_user()
    if entry is None:
        return
    for path in files:
        local = directory / path.lstrip("/")
        os.chown(local, 0, entry.pw_gid)
        local.chmod(0o440)


def _die_with_parent() -> None:
    """Runs in the child: if the process that started us dies (even by SIGKILL), we get SIGTERM."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _with_open_files(limits: tuple[int, int]):
    """A child set-up that hands the process RLIMIT_NOFILE (soft, hard), as a container runtime hands one to the
    container's first process, then ties it to our life."""
    def setup() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
        _die_with_parent()
    return setup


WITH_HOSTS = ('hosts=$0; uid=$1; gid=$2; shift 2; mount --bind "$hosts" /etc/hosts && '
              'exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --pdeathsig TERM -- "$@"')
"""Inside a private mount namespace: our hosts file over /etc/hosts, then drop to the broker's user (setpriv
sets the parent-death signal again after the change of user, which clears it)."""


def _pod_hosts_file(directory: Path, names: set[str]) -> Path | None:
    """Write a hosts file for the pods' DNS names, if this process may give brokers a mount namespace of their own."""
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")):
        return None
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    path = directory / "hosts"
    path.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {name}\n" for name in sorted(names)))
    path.chmod(0o644)
    return path


def _with_pod_hosts(command: list[str], hosts: Path, account: pwd.struct_passwd) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", WITH_HOSTS,
            str(hosts), str(account.pw_uid), str(account.pw_gid), *command]


def _frontend_sources(cfg: str) -> dict[str, list[str]]:
    """frontend name -> the networks its `tcp-request connection reject unless { src ... }` admits."""
    found, current = {}, None
    for line in cfg.splitlines():
        section = re.match(r"^frontend (\S+)", line)
        if section or (line and not line[0].isspace()):
            current = section.group(1) if section else None
            continue
        rule = re.match(r"^\s+tcp-request connection reject unless \{ src (.+) \}$", line)
        if current and rule:
            found[current] = rule.group(1).split()
    return found


def _exempt_this_machine(cfg: str) -> str:
    """Exempt 127.0.0.1 from the per-source flood limits, as a NAT gateway would be.

    Locally 127.0.0.1 stands for the whole plant: the engine's readiness probes and every local client connect
    from it, where a cluster would see many devices with addresses of their own. Clients bound to another
    loopback address (127.0.0.2, 127.0.1.x) are counted exactly as the rendered config says
    (tests/test_flood_protection.py)."""
    return re.sub(rf"^(\s+)(tcp-request connection track-sc0 src table {FLOOD_TABLE})$",
                  r"\1tcp-request connection accept if { src 127.0.0.1 }\n\1\2", cfg, flags=re.M)


def _scheme(protocol: str, tls: bool) -> str:
    return ("wss" if tls else "ws") if protocol == "websockets" else ("mqtts" if tls else "mqtt")


class LocalEstate:
    """Context manager owning every process of a local estate."""

    def __init__(self, rendered: Render, workdir: Path, broker_open_files: tuple[int, int] | None = None,
                 control_plane=None):
        self.rendered = rendered
        self.control_plane = control_plane
        """The AWS control plane (estate.aws_provider.ControlPlane) the render provisioned against, if kept running:
        the AWS stand-ins read the bridge's IoT policy back from it."""
        self.bridges: list[LocalProcess] = []
        self.standins: list[CloudStandin] = []
        """One local stand-in per cloud bridge for the cloud it dials (estate/cloud_standins.py)."""
        self.workdir = workdir
        self.broker_open_files = broker_open_files
        """RLIMIT_NOFILE (soft, hard) each broker process starts with, as a runtime would hand it (None: ours)."""
        self.brokers: list[LocalProcess] = []
        self.frontends: list[LocalProcess] = []
        self.exporters: list[LocalProcess] = []
        """The exporter sidecars of broker and bridge pods (pod name as the pod they sit in)."""
        self.reloaders: list[LocalProcess] = []
        """The reloader sidecars of broker pods."""
        self.backups: list[LocalProcess] = []
        """The backup sidecars of broker pods (estate/local_backup.py)."""
        self._own_plane = False
        """Whether this estate started the control plane (S3 for backups) and so stops it."""
        self._pods: dict[str, tuple[LocalProcess, dict, dict, dict]] = {}
        """pod -> (its main process, workload, main container, files), to delete and recreate a pod."""
        self._addresses: dict[tuple[str, int], int] = {}
        """(pod DNS name, pod port) -> local port, as planned at start (a recreated broker bridges the same way)."""
        # Pod directories live in a fresh directory under the system temp dir: when run as root, mosquitto
        # drops to its own user, which must be able to reach them (a 0700 parent such as pytest's would not do).
        self.pods_dir: Path | None = None
        self.unused_port = 0
        self.taken_ports: set[int] = set()
        self.hosts_file: Path | None = None
        """A hosts file naming every pod 127.0.0.1, bind-mounted over /etc/hosts for the brokers (None where this
        process cannot make a mount namespace: then bridges dial 127.0.0.1 and need pki.loopbackSans)."""

    @property
    def processes(self) -> list[LocalProcess]:
        return self.brokers + self.bridges + self.frontends + self.exporters + self.reloaders + self.backups

    def __enter__(self) -> "LocalEstate":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- planning: every pod's local ports are known before anything starts (bridges point at lower pods)
    def _plan(self):
        objects = self.rendered.objects
        addresses: dict[tuple[str, int], int] = {}
        plans = []
        for workload in local_workloads(objects):
            container = _container(workload)
            files = pod_files(objects, workload)
            is_frontend = any(path.endswith("/haproxy.cfg") for path in files)
            is_bridge = (workload["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == BRIDGE_APP
            for ordinal in range(_replicas(workload, objects)):
                pod = f"{workload['metadata']['name']}-{ordinal}"
                env = {"POD_NAME": pod}
                kind = "frontend" if is_frontend else "bridge" if is_bridge else "broker"
                proc = LocalProcess(pod, kind, self.pods_dir / pod, env=env, workload=workload["metadata"]["name"],
                                    labels=dict(workload["spec"]["template"]["metadata"].get("labels") or {}),
                                    server_name=_service_dns(workload, objects) if is_frontend
                                    else _pod_dns(workload, ordinal))
                if is_frontend:
                    pod_ports = [p["containerPort"] for p in container.get("ports", [])]
                else:
                    conf_path = _expand(_broker_conf_arg(container), env)
                    pod_ports = [lst.port for lst in parse_listeners(files[conf_path][0])]
                proc.ports = {port: free_port(self.taken_ports) for port in pod_ports}
                proc.named_ports = {p["name"]: proc.ports[p["containerPort"]] for p in container.get("ports", [])
                                    if p.get("name") and p["containerPort"] in proc.ports}
                proc.containers = {name: container["name"] for name in proc.named_ports}
                for port, local in proc.ports.items():
                    addresses[(_pod_dns(workload, ordinal), port)] = local
                plans.append((proc, workload, container, files))
        return plans, addresses

    def start(self) -> None:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        self.pods_dir = Path(tempfile.mkdtemp(prefix="mqtt-estate-pods-"))
        self.pods_dir.chmod(0o711)  # traversable by the broker's user; each pod directory is its own
        self.unused_port = free_port(self.taken_ports)
        plans, addresses = self._plan()
        standins = {proc.pod: self._plan_standin(proc, workload, files)
                    for proc, workload, container, files in plans if proc.kind == "bridge"}
        self.hosts_file = _pod_hosts_file(self.pods_dir, {host for host, _ in addresses}
                                          | {s.cloud.host for s in standins.values()})
        for standin in standins.values():  # the clouds first: a bridge that finds its cloud away backs off
            standin.start(_die_with_parent, wait_for_port)
        self._addresses = addresses
        for proc, workload, container, files in plans:
            self._pods[proc.pod] = (proc, workload, container, files)
            if proc.kind == "broker":
                self._run_init_containers(proc, workload)
                self._start_broker(proc, container, files, addresses)
        for proc, workload, container, files in plans:
            if proc.kind == "bridge":
                self._start_bridge(proc, container, files, addresses, standins[proc.pod])
        for proc, workload, container, files in plans:
            if proc.kind == "frontend":
                self._start_frontend(proc, workload, container, files, addresses)
        for proc, workload, container, files in plans:
            sidecar = _sidecar(workload, EXPORTER)
            if sidecar is not None and proc.kind in ("broker", "bridge"):
                self._start_exporter(proc, sidecar)
            if proc.kind == "broker":
                self._start_broker_sidecars(proc, workload)
        for proc in self.processes:
            for listener in proc.listeners:
                listener["server_name"] = proc.server_name
        self._wait_until_frontends_route()

    def _wait_until_frontends_route(self, timeout: float = 15.0) -> None:
        """Like a rollout that waits for ready pods: return once every HAProxy's first checks are done (its `health`
        backend shows exactly the running brokers up), so no client is sent to an ordinal that does not exist."""
        if not self.frontends:
            return
        wanted = {server_id(i) for i in range(len(self.brokers))}
        deadline = time.monotonic() + timeout
        for proc in self.frontends:
            sock = proc.directory / "tmp" / "haproxy.sock"
            while True:
                try:
                    up = {name for name, state in server_states(sock, HEALTH_BACKEND).items() if state == 2}
                except OSError:
                    up = set()
                if up == wanted:  # servers start up before their first check; pods that do not exist yet go down
                    break
                for broker in self.brokers:  # a broker that died after opening its health port is never healthy
                    if broker.process.poll() is not None:
                        log = broker.directory / "process.log"
                        raise RuntimeError(f"{broker.pod} exited with {broker.process.returncode}: "
                                           f"{log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{proc.pod} did not see the brokers healthy within {timeout} s "
                                       f"(up: {sorted(up)}); see {proc.directory / 'process.log'}")
                time.sleep(0.1)

    def _write_pod_files(self, proc: LocalProcess, container: dict, files: dict) -> dict[str, str]:
        mounts = _pod_mounts(proc.directory, container)
        for local in mounts.values():
            Path(local).mkdir(parents=True, exist_ok=True)
        for path, (content, secret) in files.items():
            write_file(proc.directory / path.lstrip("/"), content, secret)
        return mounts

    def _start_broker(self, proc: LocalProcess, container: dict, files: dict, addresses) -> None:
        mounts = self._write_pod_files(proc, container, files)
        conf_path = _expand(_broker_conf_arg(container), proc.env)
        conf = files[conf_path][0]
        local_conf = proc.directory / "local-mosquitto.conf"
        write_file(local_conf, rewrite_conf(conf, proc.ports, mounts, addresses, keep_names=self.hosts_file is not None))
        _hand_to_mosquitto_user(proc.directory)
        _owned_like_volume_files(proc.directory, files)
        # the pod's own start script (its first argument after the shell), with the pod's directories mapped here
        script = proc.directory / container["command"][1].lstrip("/")
        proc.command = ["/bin/sh", str(script), str(local_conf)]
        proc.env = {**proc.env, **_mosquitto_dirs(mounts)}
        self._launch(proc)
        listeners = parse_listeners(conf)
        # mosquitto opens every listener before it serves any, so the plain health listener tells readiness
        # without a TLS handshake that would only add errors to the log.
        health = next(lst for lst in listeners if lst.bind == "127.0.0.1")
        proc.health_port = proc.ports[health.port]
        wait_for_port(proc.health_port, proc.process, proc.directory / "process.log")
        for lst in listeners:
            if lst.bind == "127.0.0.1":
                continue
            proc.listeners.append(self._listener(lst.name, proc.ports[lst.port], lst.port, lst.protocol, lst.tls,
                                                 lst.mtls, lst.settings.get("allow_anonymous") == "true"))

    def _start_exporter(self, pod: LocalProcess, container: dict) -> None:
        """The pod's exporter sidecar, reading the pod's health listener (estate/local_exporters.py)."""
        port, named = self._claim_sidecar_port(pod, container)
        proc = LocalProcess(pod.pod, "exporter", pod.directory / "exporter", named_ports=named)
        proc.command = local_command(container, pod.health_port, port, pod.directory)
        proc.env = package_path({})
        self._launch(proc)
        wait_for_port(port, proc.process, proc.directory / "process.log")

    def _start_reloader(self, pod: LocalProcess, container: dict) -> None:
        """The broker pod's reloader sidecar: its script from the pod's config directory, under the broker's user
        (as in the pod, which runs every container as that user), with the pod's directories mapped here."""
        mounts = _pod_mounts(pod.directory, container)
        script = rewrite_paths(f" {container['command'][-1]}", mounts)[1:]
        proc = LocalProcess(pod.pod, "reloader", pod.directory / "reloader", workload=pod.workload)
        proc.command = [*_ash(), script]
        proc.env = {**_literal_env(container), **_mosquitto_dirs(mounts)}
        self._launch(proc)

    def _claim_sidecar_port(self, pod: LocalProcess, container: dict) -> tuple[int, dict[str, int]]:
        """A sidecar's local port, entered in the pod's named ports under each name the container declares (a
        PodMonitor names them): the one it had if the pod is recreated (the connection file and the local
        Prometheus keep pointing at it), else a free one. Returns (port, its names -> port)."""
        names = [declared["name"] for declared in container.get("ports", [])]
        port = next((pod.named_ports[n] for n in names if n in pod.named_ports), None) or free_port(self.taken_ports)
        for name in names:
            pod.named_ports[name] = port
            pod.containers[name] = container["name"]
        return port, {name: port for name in names}

    def _start_broker_sidecars(self, pod: LocalProcess, workload: dict) -> None:
        reloader = _sidecar(workload, RELOADER)
        if reloader is not None:
            self._start_reloader(pod, reloader)
        backup = _sidecar(workload, BACKUP)
        if backup is not None:
            self._start_backup(pod, backup)

    def _s3(self):
        """The control plane backups go to: the render's, or one of our own when it kept none running."""
        from .aws_provider import ControlPlane

        if self.control_plane is None:
            self.control_plane, self._own_plane = ControlPlane(), True
        return self.control_plane.start()

    def _run_init_containers(self, pod: LocalProcess, workload: dict) -> None:
        """The pod's restore initContainer, to completion, before the broker starts (as the kubelet runs init
        containers). A failure stops the start with its last lines, as a pod stuck in Init:Error would."""
        container = _sidecar(workload, RESTORE, "initContainers")
        if container is None:
            return
        mounts = _pod_mounts(pod.directory, container)
        Path(mounts[DATA_DIR]).mkdir(parents=True, exist_ok=True)
        plane = self._s3()
        env = local_backup.local_environment(container, pod.pod, mounts, plane)
        # the sidecar names the lock the bucket must be made with; the init container runs first, so it makes it
        local_backup.ensure_bucket(plane, _literal_env(_sidecar(workload, BACKUP) or container))
        log = pod.directory / "restore" / "process.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as handle:
            done = subprocess.run(local_backup.command("init"), stdout=handle, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env={**os.environ, **env}, timeout=120,
                                  preexec_fn=_die_with_parent)
        if done.returncode != 0:
            raise RuntimeError(f"{pod.pod}: init container {RESTORE} exited with {done.returncode}: "
                               f"{local_backup.log_tail(log)}")
        _hand_to_mosquitto_user(Path(mounts[DATA_DIR]))  # fsGroup: what the init container wrote is the broker's

    def _start_backup(self, pod: LocalProcess, container: dict) -> None:
        """The broker pod's backup sidecar: signals the pod's mosquitto (through its pid file) and uploads its
        database to the control plane's S3; its metrics port is the pod's, for the local Prometheus."""
        port, named = self._claim_sidecar_port(pod, container)
        mounts = _pod_mounts(pod.directory, container)
        plane = self._s3()
        proc = LocalProcess(pod.pod, "backup", pod.directory / "backup", workload=pod.workload, named_ports=named)
        proc.command = local_backup.command("agent")
        proc.env = local_backup.local_environment(
            container, pod.pod, mounts, plane, BACKUP_METRICS_LISTEN=f"127.0.0.1:{port}",
            BACKUP_BROKER=f"127.0.0.1:{pod.health_port}")
        local_backup.ensure_bucket(plane, proc.env)  # made already when the pod has its restore init container
        self._launch(proc)
        wait_for_port(port, proc.process, proc.directory / "process.log")

    def delete_pod(self, pod: str, damage: Callable[[Path], None] | None = None) -> None:
        """`kubectl delete pod`: the pod's processes stop (mosquitto saves its database on SIGTERM, within the
        pod's grace period), and the StatefulSet recreates it: init containers run again, then the broker and its
        sidecars. `damage(data_dir)` happens to the data volume while the pod is away (a lost or broken disk)."""
        proc, workload, container, files = self._pods[pod]
        if proc.kind != "broker":
            raise ValueError(f"{pod} is a {proc.kind} pod: only broker pods are recreated here")
        for running in [p for p in self.processes if p.pod == pod]:
            if running.process is not None and running.process.poll() is None:
                os.killpg(running.process.pid, signal.SIGTERM)
                running.process.wait(timeout=10)
            self._kind_list(running).remove(running)
        if damage is not None:
            damage(Path(_pod_mounts(proc.directory, container)[DATA_DIR]))
        proc.listeners, proc.process = [], None
        self._run_init_containers(proc, workload)
        self._start_broker(proc, container, files, self._addresses)
        exporter = _sidecar(workload, EXPORTER)
        if exporter is not None:
            self._start_exporter(proc, exporter)
        self._start_broker_sidecars(proc, workload)
        for listener in proc.listeners:
            listener["server_name"] = proc.server_name

    def _plan_standin(self, proc: LocalProcess, workload: dict, files: dict) -> CloudStandin:
        """The local stand-in for the cloud a bridge pod dials, its files written (estate/cloud_standins.py)."""
        cloud = parse_cloud_conf(files[f"{CLOUD_DIR}/{CLOUD_CONF}"][0])
        provider = workload["metadata"]["labels"][PROVIDER_LABEL]
        standin = CloudStandin(proc.pod, provider, cloud, self.pods_dir / f"{proc.pod}-cloud",
                               free_port(self.taken_ports), free_port(self.taken_ports), account=_mosquitto_user())
        standin.directory.mkdir(parents=True)
        bridge_cert, policies = None, []
        if cloud.certfile:
            cert_pem = files[cloud.certfile][0]
            bridge_cert = standin.directory / "bridge.crt"
            write_file(bridge_cert, cert_pem)
            if provider == AWS:
                policies = aws_policy_documents(self.rendered.registry, cert_pem, self.control_plane)
        standin.write(bridge_cert, acl_entries(provider, cloud, policies))
        self.standins.append(standin)
        return standin

    def _start_bridge(self, proc: LocalProcess, container: dict, files: dict, addresses,
                      standin: CloudStandin) -> None:
        """A cloud bridge's pod: its rendered files, with mount paths and the estate leg's addresses rewritten as
        for a broker, and its cloud block pointed at the stand-in (address and trust anchor only)."""
        mounts = self._write_pod_files(proc, container, files)
        conf_path = _expand(_broker_conf_arg(container), proc.env)
        conf = files[conf_path][0]
        local_conf = proc.directory / "local-mosquitto.conf"
        keep_names = self.hosts_file is not None
        write_file(local_conf, rewrite_conf(conf, proc.ports, mounts, addresses, keep_names=keep_names))
        cloud_path = f"{CLOUD_DIR}/{CLOUD_CONF}"
        cloud_conf = "\n".join(rewrite_paths(line, mounts) for line in files[cloud_path][0].splitlines())
        write_file(proc.directory / cloud_path.lstrip("/"), rewrite_cloud_conf(
            cloud_conf, standin.cloud.host if keep_names else "127.0.0.1", standin.port, str(standin.ca_file)),
            secret=True)
        _hand_to_mosquitto_user(proc.directory)
        _owned_like_volume_files(proc.directory, files)
        proc.command = ["mosquitto", "-c", str(local_conf)]
        self._launch(proc)
        health = next(lst for lst in parse_listeners(conf) if lst.bind == "127.0.0.1")
        proc.health_port = proc.ports[health.port]
        wait_for_port(proc.health_port, proc.process, proc.directory / "process.log")

    def _start_frontend(self, proc: LocalProcess, workload: dict, container: dict, files: dict, addresses) -> None:
        mounts = self._write_pod_files(proc, container, files)
        cfg_pod_path = next(path for path in files if path.endswith("/haproxy.cfg"))
        cfg = files[cfg_pod_path][0]
        peers = {host: local for (host, port), local in addresses.items() if port == PEER_PORT}
        local_cfg = proc.directory / "local-haproxy.cfg"
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        write_file(local_cfg, _exempt_this_machine(rewrite_haproxy_cfg(
            cfg, proc.ports, addresses, peers, mounts, self.unused_port,
            fd_limit if fd_limit != resource.RLIM_INFINITY else None)))
        spec_env = self._frontend_env(container, mounts)
        script = str(proc.directory / cfg_pod_path.lstrip("/")).replace("haproxy.cfg", "start.sh")
        proc.command = ["/bin/sh", script]
        proc.env = {**proc.env, **spec_env, "HAPROXY_CFG": str(local_cfg), "HAPROXY_RUN_DIR": mounts["/tmp"],
                    "PEER_NAME": proc.pod, "PEER_WAIT_SECONDS": "0"}
        self._launch(proc)
        ports = frontend_ports(cfg)
        sources = _frontend_sources(cfg)
        for name, (port, tls, broker_port) in ports.items():
            wait_for_port(proc.ports[port], proc.process, proc.directory / "process.log")
            broker_listener = next((item for b in self.brokers for item in b.listeners
                                    if item["pod_port"] == broker_port), {})
            protocol = "websockets" if broker_listener.get("transport") == "websockets" else "mqtt"
            proc.listeners.append(self._listener(name, proc.ports[port], port, protocol, tls,
                                                 broker_listener.get("mtls", False),
                                                 broker_listener.get("allow_anonymous", False), sources.get(name, [])))

    def _frontend_env(self, container: dict, mounts: dict[str, str]) -> dict[str, str]:
        """The container's environment as the kubelet would set it: literal values (a path under a mount points
        at the pod directory's copy, as in haproxy.cfg) and any secretKeyRef. The stats credentials are not in
        the environment: they are files of the mounted stats Secret, which _write_pod_files wrote (mode 0600)."""
        secrets = {o["metadata"]["name"]: o for o in self.rendered.objects if o["kind"] == "Secret"}
        env = {}
        for item in container.get("env", []):
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                env[item["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
            elif "value" in item:
                env[item["name"]] = rewrite_paths(f" {item['value']}", mounts)[1:]
        return env

    @staticmethod
    def _listener(name, port, pod_port, protocol, tls, mtls, anonymous, source_ranges=()) -> dict:
        """A listener as clients see it; `source_ranges` are the networks HAProxy admits on it (empty: any). A
        broker's own listeners carry none: their sourceRanges live in a NetworkPolicy, which nothing enforces on
        127.0.0.1."""
        return {"name": name, "url": f"{_scheme(protocol, tls)}://127.0.0.1:{port}", "host": "127.0.0.1",
                "port": port, "pod_port": pod_port, "transport": "websockets" if protocol == "websockets" else "tcp",
                "tls": tls, "mtls": mtls, "allow_anonymous": anonymous, "source_ranges": list(source_ranges)}

    def _launch(self, proc: LocalProcess) -> None:
        proc.directory.mkdir(parents=True, exist_ok=True)
        log = proc.directory / "process.log"
        # Started directly as the broker's user (a later setuid would clear the parent-death signal), in its
        # own session so Ctrl-C reaches only us, and tied to our life so nothing outlives a killed parent.
        # the backup sidecar runs as us: this Python may not be readable by the mosquitto user (root signals it)
        account = _mosquitto_user() if proc.kind in ("broker", "bridge", "reloader") else None
        ids = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []} if account else {}
        command = proc.command
        if proc.kind in ("broker", "bridge") and self.hosts_file is not None and account is not None:
            command, ids = _with_pod_hosts(command, self.hosts_file, account), {}
        setup = _die_with_parent
        if proc.kind == "broker" and self.broker_open_files is not None:
            setup = _with_open_files(self.broker_open_files)
        with open(log, "w") as handle:
            proc.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            env={**os.environ, **proc.env}, preexec_fn=setup, **ids)
        self._kind_list(proc).append(proc)

    def _kind_list(self, proc: LocalProcess) -> list[LocalProcess]:
        return {"broker": self.brokers, "bridge": self.bridges, "frontend": self.frontends,
                "exporter": self.exporters, "reloader": self.reloaders, "backup": self.backups}[proc.kind]

    def kill(self, pod: str) -> None:
        """kill -9 one pod's main process (failover tests); its sidecars live on, as in a pod whose container
        crashed."""
        proc = next(p for p in self.processes if p.pod == pod and p.kind not in SIDECARS)
        proc.process.kill()
        proc.process.wait()

    def restart(self, pod: str) -> None:
        proc = next(p for p in self.processes if p.pod == pod and p.kind not in SIDECARS)
        self._kind_list(proc).remove(proc)
        self._launch(proc)
        if proc.health_port:
            wait_for_port(proc.health_port, proc.process, proc.directory / "process.log")

    def stop(self) -> None:
        for proc in self.processes:
            if proc.process is not None and proc.process.poll() is None:
                os.killpg(proc.process.pid, 15)
        for proc in self.processes:
            if proc.process is None:
                continue
            try:
                proc.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.process.pid, 9)
                proc.process.wait()
        for standin in self.standins:
            standin.stop()
        if self._own_plane and self.control_plane is not None:
            self.control_plane.stop()
        if self.pods_dir is not None:
            shutil.rmtree(self.pods_dir, ignore_errors=True)

    def write_connection_file(self) -> Path:
        """Everything a client needs: listener URLs, CA, client certificates and a credentials file."""
        registry = self.rendered.registry
        out = self.workdir
        certs = {}
        for obj in self.rendered.objects:  # the grouped client-certificate Secrets (components/client_bundles.py)
            users = bundle_users(obj)
            data = object_data(obj) if users else {}
            for user in users:
                cert, key = out / "clients" / f"{user}.crt", out / "clients" / f"{user}.key"
                write_file(cert, data[cert_key(user)])
                write_file(key, data[key_key(user)], secret=True)
                certs[user] = {"cert": str(cert), "key": str(key)}
        certs = dict(sorted(certs.items()))
        ca_file = out / "ca.crt"
        write_file(ca_file, registry.stack_outputs.get("caCertPem", ""))
        credentials = out / "credentials.json"
        write_file(credentials, json.dumps(registry.stack_outputs.get("credentials") or {}, indent=2, sort_keys=True)
                   + "\n", secret=True)
        users = registry.stack_outputs.get("users") or []
        admins = [u["name"] for u in users if u["role"] == "admin"]
        demo_cert = next((u for u in admins if u in certs), next(iter(sorted(certs)), None))

        def describe(proc: LocalProcess) -> dict:
            found = {"pod": proc.pod, "pid": proc.process.pid, "listeners": proc.listeners,
                     "health_port": proc.health_port, "log": str(proc.directory / "process.log")}
            if proc.kind == "frontend":
                found["runtime_socket"] = str(proc.directory / "tmp" / "haproxy.sock")
            return found

        entry = self.frontends[0] if self.frontends else (self.brokers[0] if self.brokers else None)
        connection = {
            "stack": self.rendered.stack,
            "ca_file": str(ca_file),
            "credentials_file": str(credentials),
            "users": users,
            "client_certificates": certs,
            "demo_client": {"username": demo_cert, **certs[demo_cert]} if demo_cert else None,
            "brokers": [describe(p) for p in self.brokers],
            "frontends": [describe(p) for p in self.frontends],
            "bridges": [describe(p) for p in self.bridges],
            "exporters": [{"pod": p.pod, "url": f"http://127.0.0.1:{p.named_ports[EXPORTER_PORT_NAME]}/metrics",
                           "log": str(p.directory / "process.log")} for p in self.exporters],
            "backups": [{"pod": p.pod, "url": f"http://127.0.0.1:{p.named_ports[BACKUP_PORT_NAME]}/metrics",
                         "bucket": p.env.get("BACKUP_BUCKET"), "s3_endpoint": p.env.get("BACKUP_ENDPOINT"),
                         "log": str(p.directory / "process.log")} for p in self.backups],
            "cloud": {s.bridge: s.describe() for s in self.standins},
            "entry": entry.pod if entry else None,
            "listeners": entry.listeners if entry else [],
        }
        path = out / "connection.json"
        write_file(path, json.dumps(connection, indent=2) + "\n")
        return path
