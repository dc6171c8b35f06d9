"""The exporter sidecars of a local estate: the same program the pods run (mqtt_estate.exporter), with the pod's
own arguments, only its addresses and mount paths made local."""

from __future__ import annotations

import sys
from pathlib import Path


PACKAGE_ROOT = Path(sys.modules[__package__.rpartition(".")[0]].__file__).resolve().parent.parent
"""What puts `mqtt_estate` on the exporter's path: the folder holding the mqtt_estate package (the source
checkout's root, or site-packages when installed), whatever the working directory."""


def local_command(container: dict, health_port: int, metrics_port: int, pod_dir: Path) -> list[str]:
    """The sidecar's command line here: `--broker` is the pod's health listener, `--listen` a loopback port, and
    every certificate path the file written into the pod's directory."""
    args = list(container.get("args", []))
    out = [sys.executable, "-m", "mqtt_estate.exporter"]
    for i, arg in enumerate(args):
        previous = args[i - 1] if i else ""
        if previous == "--broker":
            arg = f"127.0.0.1:{health_port}"
        elif previous == "--listen":
            arg = f"127.0.0.1:{metrics_port}"
        elif previous == "--credential" and "=/" in arg:
            name, _, path = arg.partition("=")
            arg = f"{name}={pod_dir / path.lstrip('/')}"
        out.append(arg)
    return out


def package_path(env: dict[str, str]) -> dict[str, str]:
    """The environment with PYTHONPATH leading to this mqtt_estate."""
    parts = [str(PACKAGE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    return {**env, "PYTHONPATH": ":".join(parts)}
