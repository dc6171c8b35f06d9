"""Run the real Pulumi program under Pulumi's mock monitor and record what it registered.

Kubernetes resources are echoed back as their own inputs (what the provider would send to the API server);
pulumi-tls and pulumi-random resources are computed for real (tls_provider, random_provider), pulumi-aws's IoT and S3
resources and invokes against a local moto_server (aws_provider).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import runpy
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pulumi
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from . import aws_provider, random_provider, tls_provider
from .seed import Seed

PROVIDERS = {**tls_provider.RESOURCES, **random_provider.RESOURCES, **aws_provider.RESOURCES}
INPUT_ERRORS = (tls_provider.InputError, random_provider.InputError, aws_provider.InputError)
"""What the provider modules raise for inputs they refuse; their message already says what is wrong."""


class EngineError(Exception):
    """The program asked for something the engine refuses or cannot compute: one line per problem, each naming
    the resource. The CLI prints the lines (exit 1); ESTATE_DEBUG=1 adds the traceback (the original error is
    this exception's cause)."""

    def __init__(self, problems: list[str], original: Optional[BaseException] = None):
        self.problems = list(problems)
        self.original = original
        """What the provider raised (kept here too: Pulumi's runtime re-chains the exceptions it passes on)."""
        super().__init__("\n".join(self.problems))


def _is_refusal(exc: Optional[BaseException]) -> bool:
    for _ in range(20):
        if exc is None:
            return False
        if isinstance(exc, EngineError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _quiet_refusals(loop: asyncio.AbstractEventLoop) -> None:
    """Every output of a refused resource holds the refusal, and asyncio logs each such future as "exception
    was never retrieved" with a traceback when it is collected: the refusal is reported once, by run_function."""
    previous = loop.get_exception_handler()
    if getattr(previous, "estate_quiet", False):
        return

    def handler(loop, context):
        if _is_refusal(context.get("exception")):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.estate_quiet = True
    loop.set_exception_handler(handler)


def duplicate_urn_message(urn: str) -> str:
    # Pulumi's own wording: pulumi/pulumi sdk/go/common/diag/errors.go, GetDuplicateResourceURNError (diag 2001):
    #   "Duplicate resource URN '%v'; try giving it a unique name"
    # raised by stepGenerator.generateURN in pkg/resource/deploy/step_generator.go when a URN repeats in one
    # deployment. Pulumi's mock monitor does not check, so the offline engine does.
    return f"Duplicate resource URN '{urn}'; try giving it a unique name"


def pulumi_urn(parent_qualified_type: str, typ: str, name: str) -> tuple[str, str]:
    """(URN, qualified type) as the Pulumi engine makes them (Deployment.generateURN / resource.NewURN): the
    parent's full qualified type joined with `$`, none for a child of the root stack. The mock monitor's own URNs
    keep only the parent's last type, so two resources the engine tells apart can share one there."""
    qualified = f"{parent_qualified_type}${typ}" if parent_qualified_type else typ
    return f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{qualified}::{name}", qualified


def resource_problem(typ: str, name: str, problem: str) -> str:
    # Pulumi's wording for a resource the provider refuses: GetResourceInvalidError (diag 2002) in the same file,
    #   "%v resource '%v' has a problem: %v"
    return f"{typ} resource '{name}' has a problem: {problem}"


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An error's message on one line, at most `limit` characters."""
    text = " ".join(str(exc).split()) or "(no message)"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _describe(exc: BaseException) -> str:
    """One line for an error raised while computing a resource."""
    if isinstance(exc, INPUT_ERRORS):
        return str(exc)
    return f"cannot be computed offline ({type(exc).__name__}: {one_line(exc)})"


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
    provider: str = ""
    """The explicit provider it is bound to, as Pulumi references one (`<provider urn>::<id>`); "" for the default
    provider (configured by the stack's `<package>:` keys)."""
    version: str = ""
    """The plugin version the SDK asked for (its package's version; "" if none): the engine names a default
    provider after it and sets it as a provider's `version` input."""


@dataclass
class Registry:
    resources: list[Registered] = field(default_factory=list)
    project: str = "mqtt-estate"
    """The project the program ran as (in every URN, and the Stack resource's `<project>-<stack>`)."""
    stack_outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    config: dict[str, str] = field(default_factory=dict)
    """The stack config the program ran with ('namespace:key' -> text): a default provider's inputs are its
    package's keys (policy_run.default_provider)."""

    def stack_name(self, stack: str) -> str:
        """The root Stack resource's name, as Pulumi names it: `<project>-<stack>`."""
        return f"{self.project}-{stack}"

    def public_outputs(self) -> dict:
        """The stack outputs with every secret one masked (outputs.json, and what the policy pack sees)."""
        return {k: ("[secret]" if k in self.secret_outputs else v) for k, v in sorted(self.stack_outputs.items())}

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
        self.current = threading.local()
        """`unwrapped`: the inputs (without secret wrappers) and secretness of the resource this thread is
        registering, kept for the monitor's record (no second pass). The mock monitor calls new_resource in the
        registering thread, and Pulumi registers resources from several threads at once."""
        self.errors: list[EngineError] = []
        """Everything refused while the program ran, in order (Pulumi's runtime wraps what a mock raises)."""
        self.lock = threading.Lock()

    def fail(self, error: EngineError) -> EngineError:
        with self.lock:
            self.errors.append(error)
        return error

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs, secret = unwrap(args.inputs)
        self.current.unwrapped = (inputs, secret)
        compute = PROVIDERS.get(args.typ)
        if compute:
            try:
                state = (compute(self.seed, args.name, inputs, args.provider or "")  # aws: region of its provider
                         if args.typ in aws_provider.RESOURCES else compute(self.seed, args.name, inputs))
            except Exception as exc:  # any failure of a provider becomes one line naming the resource
                raise self.fail(EngineError([resource_problem(args.typ, args.name, _describe(exc))], exc)) from exc
        elif args.typ.startswith("kubernetes:"):
            # What programs read back from a Kubernetes object is its identity (metadata); echoing the whole
            # spec would only be serialized and parsed again. The record keeps the full inputs.
            state = {key: inputs[key] for key in ("apiVersion", "kind", "metadata") if key in inputs}
        else:
            state = inputs
        self.current.state = state
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        # a plain dict: the mock monitor reads a tuple's second item as a list of check failures (None fails)
        invoke = aws_provider.INVOKES.get(args.token)
        if invoke is None:
            return {}
        try:
            return invoke(unwrap(args.args)[0], args.provider or "")
        except Exception as exc:  # one line naming the invoke, like a resource's
            raise self.fail(EngineError([f"invoke {args.token} has a problem: {_describe(exc)}"], exc)) from exc


class RecordingMonitor(mocks.MockMonitor):
    """MockMonitor that also remembers each resource's parent, inputs and secretness, in order."""

    def __init__(self, estate_mocks: EstateMocks):
        super().__init__(estate_mocks)
        self.estate_mocks = estate_mocks
        self.registry = Registry()
        self.pulumi_urns: set[str] = set()
        """Every URN the Pulumi engine would give the resources registered so far."""
        self.qualified_types: dict[str, str] = {}
        """mock URN -> the qualified type the Pulumi engine gives that resource (`Parent$Child$Type`)."""

    def RegisterResource(self, request):
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        urn, qualified = pulumi_urn(self.qualified_types.get(request.parent, ""), request.type, request.name)
        with self.estate_mocks.lock:
            duplicate = urn in self.pulumi_urns
            self.pulumi_urns.add(urn)
        if duplicate:
            raise self.estate_mocks.fail(EngineError([duplicate_urn_message(urn)]))
        response = super().RegisterResource(request)
        current = self.estate_mocks.current  # what new_resource saw, in this thread
        inputs, secret = current.unwrapped
        self.qualified_types[response.urn] = qualified
        self.registry.resources.append(Registered(
            urn=response.urn, type=request.type, name=request.name, parent=request.parent or None,
            custom=bool(request.custom), inputs=inputs, outputs=current.state, secret=secret,
            provider=request.provider, version=request.version))
        return response


def _program_logger() -> logging.Logger:
    """Where the program's pulumi.log lines go offline. Its only warnings are the config check's, which the CLI
    prints itself from the stack file it read (under the file's real name), so only errors pass here."""
    logger = logging.getLogger("estate.pulumi")
    logger.setLevel(logging.ERROR)
    return logger


def run_program(program: Path, stack: str, config: dict[str, str], secret_keys: list[str], seed: Seed,
                project: str = "mqtt-estate", control_plane: Optional[aws_provider.ControlPlane] = None) -> Registry:
    """Run `program` (a Pulumi __main__.py) once under mocks and return everything it registered."""
    program_dir = str(program.parent.resolve())
    added = program_dir not in sys.path
    if added:
        sys.path.insert(0, program_dir)
    cwd = os.getcwd()
    before = set(sys.modules)
    try:
        os.chdir(program_dir)
        return run_function(lambda: runpy.run_path(str(program), run_name="__main__"),
                            stack, config, secret_keys, seed, project, control_plane)
    finally:
        os.chdir(cwd)
        if added:
            sys.path.remove(program_dir)
        # Pulumi runs each program in a process of its own: the program's own modules (helpers.py beside it) must
        # not outlive the run, or the next program with a module of that name would get this one's.
        for name in _own_modules(program_dir, set(sys.modules) - before):
            del sys.modules[name]


def _own_modules(program_dir: str, names: set[str]) -> list[str]:
    """Of the modules `names`, those loaded from the program's directory: not this package (the checkout's own
    program lives at its root) and not a virtualenv or other site-packages inside the project."""
    own = []
    for name in names:
        if name == "mqtt_estate" or name.startswith("mqtt_estate."):
            continue
        module = sys.modules.get(name)
        where = getattr(module, "__file__", None)
        if where is None:  # a namespace package: its folders
            where = next(iter(getattr(module, "__path__", None) or ()), None)
        if not isinstance(where, str) or not where.startswith(program_dir + os.sep):
            continue
        if {"site-packages", "dist-packages"} & set(Path(where[len(program_dir) + 1:]).parts):
            continue
        own.append(name)
    return own


def run_function(body: Callable[[], Any], stack: str, config: dict[str, str], secret_keys: list[str], seed: Seed,
                 project: str = "mqtt-estate", control_plane: Optional[aws_provider.ControlPlane] = None) -> Registry:
    """Run `body` as a Pulumi program under mocks (a fresh root stack each time) and record what it registered.
    AWS resources are computed against `control_plane` (kept running), or against a moto_server started on first
    use and stopped when the run ends."""
    with aws_provider.session(seed, config, control_plane):
        return _run_function(body, stack, config, secret_keys, seed, project)


def _run_function(body: Callable[[], Any], stack: str, config: dict[str, str], secret_keys: list[str], seed: Seed,
                  project: str) -> Registry:
    settings.reset_options(project=project, stack=stack)
    pulumi.runtime.set_all_config(config, secret_keys)
    estate_mocks = EstateMocks(seed)
    monitor = RecordingMonitor(estate_mocks)
    mocks.set_mocks(estate_mocks, project=project, stack=stack, preview=False, monitor=monitor,
                    logger=_program_logger())
    root = settings.get_root_resource()
    _quiet_refusals(_ensure_event_loop())
    with _collector_paused():
        try:
            _sync_await(run_pulumi_func(body))
        except Exception:
            # Pulumi's runtime re-raises what a mock raised wrapped in its own messages (with every input of every
            # dependent resource): show the engine's own lines instead (raised below, outside this handler, so the
            # wrapper is not chained to them; the original error stays their __cause__).
            if not estate_mocks.errors:
                raise
    if estate_mocks.errors:  # also when the program never awaited the refused resource
        raise _combined(estate_mocks.errors)
    registry = monitor.registry
    registry.project = project
    registry.config = dict(config)
    for key, value in root.outputs.items():
        if _plain(value):  # e.g. the `users` list: wrapping each of 10,000 entries in an Output costs seconds
            registry.stack_outputs[key] = value
            continue
        output = pulumi.Output.from_input(value)
        registry.stack_outputs[key] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            registry.secret_outputs.add(key)
    return registry


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Keep the cyclic collector off the program's objects, while it runs and after.

    The program allocates millions of objects (resources, their Outputs and futures, the record) and frees few
    while it runs: with the collector on, every collection rescans them as the heap grows (a third of the run
    time at 100 brokers). Switching it back on afterwards is no better: its next collections then walk everything
    the run made, generation after generation (11 s of a 51 s render at 10,000 devices, measured). So what the
    run leaves is frozen (gc.freeze: the permanent generation, never scanned; plain reference counting still
    frees it), and the cyclic garbage among it is collected when the next run in this process starts (a CLI
    render has none). That garbage is small: Pulumi's per-Output closures, ~70 MiB at 10,000 devices, measured
    by collecting young objects throughout instead (1,445 vs 1,517 MiB peak, for 13 s more)."""
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _plain(value: Any) -> bool:
    """Whether an exported value is plain data (text, numbers, lists, mappings) with nothing to await: it is its own
    resolved value and is not secret (only an Output can be)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _combined(errors: list[EngineError]) -> EngineError:
    """One error with every problem, each once, in the order they were found; its cause is the first original
    error (what ESTATE_DEBUG=1 shows), not Pulumi's wrappers."""
    problems = list(dict.fromkeys(p for e in errors for p in e.problems))
    combined = EngineError(problems, errors[0].original)
    combined.__cause__ = combined.original
    combined.__suppress_context__ = True
    return combined
