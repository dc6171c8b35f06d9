"""mosquitto reads its password and ACL files from private copies, never from the volume files the kubelet mounts.

mosquitto 2.0.20 (the image) warns about a password or ACL file that others may read, or that another user or
group owns (eclipse/mosquitto v2.0.20 lib/misc_mosq.c:161-213, for the files opened in src/security_default.c:533
and :758). Secret and ConfigMap files are owned by root with the pod's fsGroup, so read in place they would warn on
every start and every reload. Debian's mosquitto 2.0.11 predates those checks, so instead of reading its log this
test checks the mechanism on a real boot: the local engine lays the volume files out as the kubelet does
(root:mosquitto, 0440) and the broker starts through the pod's own start script, which must leave copies owned by
the broker's user, mode 0600, that the rendered mosquitto.conf points at.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest


def _pod_dir(conn: dict) -> Path:
    return Path(conn["brokers"][0]["log"]).parent


def test_broker_reads_private_copies_of_its_password_and_acl_files(local_dev):
    if os.geteuid() != 0:
        pytest.skip("needs root to own files as the kubelet does")
    mosquitto = pwd.getpwnam("mosquitto")
    pod = _pod_dir(local_dev)
    conf = (pod / "local-mosquitto.conf").read_text()
    for name, mounted in (("passwd", "mosquitto/auth/passwd"), ("acl", "mosquitto/auth/acl"),
                          ("health.acl", "mosquitto/config/health.acl")):
        copy = pod / "mosquitto" / "run" / name
        info = copy.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (mosquitto.pw_uid, mosquitto.pw_gid, 0o600)
        assert f" {copy}" in conf and f" {pod / mounted}" not in conf
        original = (pod / mounted).stat()
        assert (original.st_uid, stat.S_IMODE(original.st_mode)) == (0, 0o440)  # as the kubelet leaves it
        assert copy.read_bytes() == (pod / mounted).read_bytes()
