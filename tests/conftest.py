"""Shared fixtures: renders of the shipped stacks (real keys, temp seed) and local estates on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mqtt_estate.estate.local import LocalEstate  # noqa: E402
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
