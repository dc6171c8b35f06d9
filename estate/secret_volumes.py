"""The kubelet's in-place refresh of Secret volumes, for a running local estate: what an updated auth or TLS
Secret does to a pod's files when the pod template stays the same (no restart; the reloader sidecar takes it from
there).

The kubelet writes a volume's new content into a fresh directory and swaps one symbolic link (`..data`), so a
container sees either all of the old files or all of the new ones (kubernetes/kubernetes
pkg/volume/util/atomic_writer.go:112-115, 233).
Here each changed file is replaced by a rename, one after the other; the reloader acts only on a fingerprint that
held for a second, which covers the gap.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol, Sequence

from .manifests import object_index, pod_files, workloads

WORKLOAD_KINDS = ("StatefulSet", "Deployment")


class Pod(Protocol):
    pod: str
    workload: str
    directory: Path


class PodTemplateChanged(RuntimeError):
    """The new render changes a pod template: Kubernetes would roll those pods, not refresh their volumes."""


def _templates(objects: list[dict]) -> dict[str, dict]:
    return {w["metadata"]["name"]: w for w in workloads(objects, WORKLOAD_KINDS)}


def _replace(path: Path, content: str) -> None:
    """Write `content` over `path` by rename, keeping its owner, group and mode (a new file takes the directory's
    owner and group, read-only for them, as a volume's files are)."""
    reference = path if path.exists() else path.parent
    info = reference.stat()
    mode = info.st_mode & 0o777 if path.exists() else 0o440
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=".refresh-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        if os.geteuid() == 0:
            os.chown(scratch, info.st_uid, info.st_gid)
        os.chmod(scratch, mode)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def refresh_secret_volumes(pods: Sequence[Pod], running: list[dict], updated: list[dict]) -> list[Path]:
    """Bring every pod's Secret-volume files from the `running` render's to the `updated` render's content; return
    the files written. Refused (nothing written) when a pod template differs between the two renders."""
    before, after = _templates(running), _templates(updated)
    rolled = sorted({pod.workload for pod in pods if before.get(pod.workload, {}).get("spec", {}).get("template")
                     != after.get(pod.workload, {}).get("spec", {}).get("template")})
    if rolled:
        raise PodTemplateChanged(f"the pod template of {', '.join(rolled)} changed: Kubernetes rolls those pods "
                                 "instead of refreshing their volumes (restart the local estate)")
    index = object_index(updated)
    written = []
    for pod in pods:
        for mount_path, (content, secret) in sorted(pod_files(index, after[pod.workload]).items()):
            local = pod.directory / mount_path.lstrip("/")
            if not secret or (local.is_file() and local.read_text() == content):
                continue
            _replace(local, content)
            written.append(local)
    return written
