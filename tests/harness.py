"""Run component code under Pulumi mocks (real TLS/random values) and look at what was registered."""

from __future__ import annotations

import datetime as dt
from typing import Callable

from estate.engine import Registry, run_function
from estate.seed import Seed

TEST_SEED = Seed(b"\x01" * 32, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))


def run_components(body: Callable[[], None], stack: str = "test", config: dict | None = None) -> Registry:
    return run_function(body, stack, config or {}, [], TEST_SEED)


def by_name(registry: Registry, name: str):
    return next(r for r in registry.resources if r.name == name)
