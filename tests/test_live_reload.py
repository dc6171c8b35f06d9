"""Users, passwords, ACLs and server certificates applied without a restart, on real mosquitto: the dev estate
runs with clients connected, the Secret volumes are refreshed as the kubelet does, and the reloader sidecar (its
script from the render, run under busybox ash as in the image) sends SIGHUP.

What mosquitto re-reads on SIGHUP and what it does to connected clients: components/mosquitto_reload.sh (cited
from eclipse/mosquitto v2.0.20 src/loop.c:231-240 and src/security_default.c:1088-1285)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from mqtt_estate.components.reloader_sidecar import SCRIPTS
from mqtt_estate.estate.local import LocalEstate
from mqtt_estate.estate.mqtt_client import round_trip
from mqtt_estate.estate.render import render
from mqtt_estate.estate.secret_volumes import PodTemplateChanged, refresh_secret_volumes
from tests.conftest import ROOT, _require
from tests.live_change import (ADDED, REMOVED, RENEWED_NAME, STAYING, accepted, changed_stack, credentials,
                               passwords, quiet, served_names, wait_for, watch)

EFFECT_WITHIN = 20.0
"""Generous: the reloader compares every 5 s and waits 1 s for the files to settle (bench/reload_bench.py prints
the measured time)."""


@pytest.fixture(scope="module")
def renders(tmp_path_factory, state_dir):
    tmp = tmp_path_factory.mktemp("live-change")
    changed = tmp / "Pulumi.dev.yaml"
    changed.write_text(changed_stack((ROOT / "Pulumi.dev.yaml").read_text()))
    return (render("dev", out=tmp / "before", state_dir=state_dir),
            render("dev", changed, out=tmp / "after", state_dir=state_dir))


@pytest.fixture(scope="module")
def live(renders, tmp_path_factory):
    _require("mosquitto")
    with LocalEstate(renders[0], tmp_path_factory.mktemp("local-live")) as local:
        yield local


def test_users_and_certificate_change_without_disconnecting_anyone(live, renders):
    before, after = renders
    conn = json.loads(live.write_connection_file().read_text())
    old = credentials(conn)
    broker = live.brokers[0]
    pid = broker.process.pid
    staying = [watch(conn, "mqtts", user, old[user]) for user in STAYING]
    plain = watch(conn, "mqtt", "dashboard", old["dashboard"])
    removed = watch(conn, "mqtt", REMOVED, old[REMOVED])
    assert RENEWED_NAME not in served_names(conn, "mqtts")
    try:
        written = refresh_secret_volumes(live.brokers, before.objects, after.objects)
        assert {path.name for path in written} == {"passwd", "acl", "tls.crt"}  # the key stays (same key resource)

        new_password = passwords(after)[ADDED]
        took = wait_for(lambda: accepted(conn, "mqtt", ADDED, new_password), EFFECT_WITHIN, step=0.2)
        assert took is not None, f"{ADDED} was not accepted within {EFFECT_WITHIN} s"
        assert not accepted(conn, "mqtt", REMOVED, old[REMOVED])
        assert wait_for(lambda: removed.disconnects, 5) is not None  # a revoked login loses its live session too
        assert RENEWED_NAME in served_names(conn, "mqtts")  # new handshakes get the renewed certificate

        quiet(6.5)  # longer than a comparison interval (5 s) and its settling second: no second signal follows
        for client in staying + [plain]:
            assert client.disconnects == [] and client.connects == 1, (client.user, client.disconnects)
            assert client.result.client.is_connected()
        # the connections that stayed still carry traffic, across the old (plain) and reloaded (TLS) listeners
        assert round_trip(staying[0].result.client, plain.result.client, "factory/production/live-reload/data")
        assert broker.process.poll() is None and broker.process.pid == pid  # never restarted
        log = (live.reloaders[0].directory / "process.log").read_text()
        assert log.count("SIGHUP sent to mosquitto") == 1, log
    finally:
        for client in staying + [plain, removed]:
            client.close()


def test_a_change_that_rolls_pods_is_not_applied_as_a_volume_refresh(renders, tmp_path, state_dir):
    """A new listener changes mosquitto.conf (a new ConfigMap name in the pod template): the kubelet would never
    see it as a file change, Kubernetes rolls the pods, so the emulation refuses instead of pretending."""
    text = (ROOT / "Pulumi.dev.yaml").read_text().replace("    preset: standard-broker\n",
                                                          "    preset: standard-broker\n    limits:\n"
                                                          "      maxConnections: 500\n")
    assert "maxConnections: 500" in text
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(text)
    rolled = render("dev", stack, out=tmp_path / "out", state_dir=state_dir)

    class Pod:
        pod, workload, directory = "mosquitto-0", "mosquitto", tmp_path / "pod"

    with pytest.raises(PodTemplateChanged, match="mosquitto"):
        refresh_secret_volumes([Pod()], renders[0].objects, rolled.objects)
    assert not Pod.directory.exists()


STAND_IN = """
import ctypes, signal, sys, time
if sys.argv[2] == "mosquitto":  # handlers first, then the name: whoever sees the name may signal it
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(0))
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME: /proc/<pid>/comm
time.sleep(30)
"""
"""A stand-in for mosquitto: its process name, and a SIGHUP handler (exit 0, so its end shows a signal went) or,
for one still starting, none (SIGHUP's default action would end it too: its survival shows none went)."""


@contextlib.contextmanager
def reloader_beside(tmp_path, acl: str, target_name: str):
    """The rendered reload.sh (0.2 s interval, busybox ash when installed) watching files that differ from what
    the run directory says mosquitto was given, with `mosquitto.pid` naming a `sleep 30` started under
    `target_name` (its process name). Yields {"dirs", "target"}; after the block, also "out" and "errors"."""
    dirs = {name: tmp_path / name for name in ("config", "auth", "certs", "run", "bin")}
    for directory in dirs.values():
        directory.mkdir()
    for name, text in SCRIPTS.items():
        (dirs["config"] / name).write_text(text)
    (dirs["auth"] / "passwd").write_text("a:x\n")
    (dirs["auth"] / "acl").write_text(acl)
    (dirs["run"] / "applied-fingerprint").write_text("stale\n")  # what mosquitto was given differs from the files
    if target_name == "sleep":
        executable = dirs["bin"] / target_name
        shutil.copy(shutil.which("sleep"), executable)
        target = subprocess.Popen([str(executable), "30"])
    else:  # a process named `target_name`; "mosquitto" handles SIGHUP (it exits), "mosquitto-starting" does not yet
        target = subprocess.Popen([sys.executable, "-c", STAND_IN, "mosquitto", target_name])
    (dirs["run"] / "mosquitto.pid").write_text(str(target.pid))
    env = {**os.environ, "RELOAD_INTERVAL_SECONDS": "0.2", **{f"MOSQUITTO_{name.upper()}_DIR": str(path)
                                                                for name, path in dirs.items()}}
    shell = ["busybox", "sh"] if shutil.which("busybox") else ["/bin/sh"]
    reloader = subprocess.Popen([*shell, str(dirs["config"] / "reload.sh")], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    run = {"dirs": dirs, "target": target}
    try:
        yield run
    finally:
        reloader.terminate()
        target.kill()
        run["out"], run["errors"] = reloader.communicate(timeout=5)
        target.wait()


def test_a_stale_pid_file_is_never_signalled(tmp_path):
    """The reloader signals only a process named mosquitto: a pid file left pointing at another process (a
    recycled pid) is ignored, and said so. SIGHUP would end `sleep`, so its survival proves no signal went."""
    with reloader_beside(tmp_path, "user a\n", "sleep") as run:
        assert wait_for(lambda: (run["dirs"]["run"] / "reloader-heartbeat").exists(), 5) is not None
        quiet(2.0)  # several comparisons, each finding the change
        assert run["target"].poll() is None
    assert "mosquitto is not running" in run["errors"]


def test_a_starting_mosquitto_is_not_signalled(tmp_path):
    """mosquitto handles SIGHUP only once it has loaded its database; before that, SIGHUP ends it. The reloader
    waits for the handler (SigCgt in /proc/<pid>/status) and tries again later."""
    with reloader_beside(tmp_path, "user a\ntopic read a/#\n", "mosquitto-starting") as run:
        assert wait_for(lambda: (run["dirs"]["run"] / "reloader-heartbeat").exists(), 5) is not None
        quiet(2.0)
        assert run["target"].poll() is None, "signalled while starting"
    assert "still starting" in run["errors"]
    assert (run["dirs"]["run"] / "applied-fingerprint").read_text() == "stale\n"  # nothing applied: tried again


@pytest.mark.parametrize("acl, signalled", [("user a\ntopic read a/#\n", True), ("user a\nbogus line\n", False)])
def test_an_acl_mosquitto_would_refuse_is_never_handed_over(tmp_path, acl, signalled):
    """mosquitto 2.0 reloading an ACL with an invalid line logs it and stops checking ACLs at all (allow-all until
    the next good reload): the reloader keeps such a file back. A stand-in named mosquitto (sleep, which SIGHUP
    ends) shows whether a signal went."""
    with reloader_beside(tmp_path, acl, "mosquitto") as run:
        ended = wait_for(lambda: run["target"].poll() is not None, 4)
    assert (ended is not None) == signalled, (run["out"], run["errors"])
    assert ("would refuse" in run["errors"]) == (not signalled)
