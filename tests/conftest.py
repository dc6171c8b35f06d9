"""Shared fixtures: renders of the shipped stacks (real keys, temp seed) and local estates on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mqtt_estate.estate.local import LocalEstate  # noqa: E402
from mqtt_estate.estate.ports import RANGE_VARIABLE  # noqa: E402

# Each pytest-xdist worker (gw0, gw1, ...) gives its local estates, and the `estate` commands its tests start, a
# port range of its own below the kernel's ephemeral range (estate/ports.py says why).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw") and _WORKER[2:].isdigit() and not os.environ.get(RANGE_VARIABLE):
    _low = 20000 + 4000 * (int(_WORKER[2:]) % 3)
    os.environ[RANGE_VARIABLE] = f"{_low}-{_low + 3999}"
from mqtt_estate.estate.render import render  # noqa: E402


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("estate-state")


TEST_STACKS = {"ha": ROOT / "tests" / "stacks" / "ha.yaml", "ha-standby": ROOT / "tests" / "stacks" / "ha-standby.yaml",
               "monitoring": ROOT / "tests" / "stacks" / "monitoring.yaml",
               "backup": ROOT / "tests" / "stacks" / "backup.yaml"}
"""Stacks that exist for tests only (the shipped ones are Pulumi.<stack>.yaml)."""


@pytest.fixture(scope="session")
def rendered(tmp_path_factory, state_dir):
    """rendered(stack) -> Render, each stack rendered once per session."""
    cache = {}

    def get(stack: str):
        if stack not in cache:
            cache[stack] = render(stack, TEST_STACKS.get(stack), out=tmp_path_factory.mktemp(f"out-{stack}") / stack,
                                  state_dir=state_dir)
        return cache[stack]

    return get


def _require(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is not installed (bash .ci/run installs it)")


@pytest.fixture(scope="module")
def local_prod(rendered, tmp_path_factory):
    _require("mosquitto")
    with LocalEstate(rendered("prod"), tmp_path_factory.mktemp("local-prod")) as local:
        yield json.loads(local.write_connection_file().read_text())


@pytest.fixture(scope="module")
def local_dev(rendered, tmp_path_factory):
    _require("mosquitto")
    with LocalEstate(rendered("dev"), tmp_path_factory.mktemp("local-dev")) as local:
        yield json.loads(local.write_connection_file().read_text())
