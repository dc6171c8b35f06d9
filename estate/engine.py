"""Run the real Pulumi program under Pulumi's mock monitor and record what it registered.

Kubernetes resources are echoed back as their own inputs (what the provider would send to the API server);
pulumi-tls and pulumi-random resources are computed for real (tls_provider, random_provider).
"""

from __future__ import annotations

import gc
import logging
import os
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pulumi
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from estate import random_provider, tls_provider
from estate.seed import Seed

PROVIDERS = {**tls_provider.RESOURCES, **random_provider.RESOURCES}


@dataclass
class Registered:
    urn: str
    type: str
    name: str
    parent: Optional[str]
    custom: bool
    inputs: dict
    outputs: dict
    secret: bool
    """Whether any input arrived marked secret."""


@dataclass
class Registry:
    resources: list[Registered] = field(default_factory=list)
    stack_outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, prefix: str) -> list[Registered]:
        return [r for r in self.resources if r.type.startswith(prefix)]


def unwrap(value: Any) -> tuple[Any, bool]:
    """Strip Pulumi's secret wrappers; report whether any were present."""
    if isinstance(value, dict):
        if rpc.is_rpc_secret(value):
            inner, _ = unwrap(rpc.unwrap_rpc_secret(value))
            return inner, True
        out, found = {}, False
        for key, item in value.items():
            out[key], secret = unwrap(item)
            found |= secret
        return out, found
    if isinstance(value, list):
        pairs = [unwrap(item) for item in value]
        return [p[0] for p in pairs], any(p[1] for p in pairs)
    if isinstance(value, float) and value.is_integer():
        return int(value), False
    return value, False


class EstateMocks(pulumi.runtime.Mocks):
    def __init__(self, seed: Seed):
        self.seed = seed
        self.unwrapped: dict[tuple[str, str], list[tuple[dict, bool]]] = {}
        """(type, name) -> inputs without secret wrappers, kept for the monitor's record (no second pass)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs, secret = unwrap(args.inputs)
        self.unwrapped.setdefault((args.typ, args.name), []).append((inputs, secret))
        compute = PROVIDERS.get(args.typ)
        if compute:
            state = compute(self.seed, args.name, inputs)
        elif args.typ.startswith("kubernetes:"):
            # What programs read back from a Kubernetes object is its identity (metadata); echoing the whole
            # spec would only be serialized and parsed again. The record keeps the full inputs.
            state = {key: inputs[key] for key in ("apiVersion", "kind", "metadata") if key in inputs}
        else:
            state = inputs
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}, None


class RecordingMonitor(mocks.MockMonitor):
    """MockMonitor that also remembers each resource's parent, inputs and secretness, in order."""

    def __init__(self, estate_mocks: EstateMocks):
        super().__init__(estate_mocks)
        self.estate_mocks = estate_mocks
        self.registry = Registry()

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs, secret = self.estate_mocks.unwrapped[(request.type, request.name)].pop()
            state = self.resources[response.urn].state
            self.registry.resources.append(Registered(
                urn=response.urn, type=request.type, name=request.name, parent=request.parent or None,
                custom=bool(request.custom), inputs=inputs, outputs=state, secret=secret))
        return response


def run_program(program: Path, stack: str, config: dict[str, str], secret_keys: list[str], seed: Seed,
                project: str = "mqtt-estate") -> Registry:
    """Run `program` (a Pulumi __main__.py) once under mocks and return everything it registered."""
    program_dir = str(program.parent.resolve())
    added = program_dir not in sys.path
    if added:
        sys.path.insert(0, program_dir)
    cwd = os.getcwd()
    try:
        os.chdir(program_dir)
        return run_function(lambda: runpy.run_path(str(program), run_name="__main__"),
                            stack, config, secret_keys, seed, project)
    finally:
        os.chdir(cwd)
        if added:
            sys.path.remove(program_dir)


def run_function(body: Callable[[], Any], stack: str, config: dict[str, str], secret_keys: list[str], seed: Seed,
                 project: str = "mqtt-estate") -> Registry:
    """Run `body` as a Pulumi program under mocks (a fresh root stack each time) and record what it registered."""
    settings.reset_options(project=project, stack=stack)
    pulumi.runtime.set_all_config(config, secret_keys)
    estate_mocks = EstateMocks(seed)
    monitor = RecordingMonitor(estate_mocks)
    mocks.set_mocks(estate_mocks, project=project, stack=stack, preview=False, monitor=monitor,
                    logger=logging.getLogger("estate.pulumi"))
    root = settings.get_root_resource()
    # The program allocates many small, long-lived objects and frees almost none while it runs: the cyclic
    # collector would only rescan them (a third of the run time at 100 brokers). Collect once afterwards.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _sync_await(run_pulumi_func(body))
    finally:
        if collecting:
            gc.enable()
    registry = monitor.registry
    for key, value in root.outputs.items():
        output = pulumi.Output.from_input(value)
        registry.stack_outputs[key] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            registry.secret_outputs.add(key)
    return registry
