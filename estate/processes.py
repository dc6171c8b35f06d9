"""Stopping a child process the engine started: politely first, then for certain."""

from __future__ import annotations

import subprocess


def terminate(process: subprocess.Popen | None, grace: float = 5.0) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; always reaped, so no zombie is left behind."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
