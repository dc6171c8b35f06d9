"""Render benchmark: offline render time of the dev and prod stacks and of a synthetic 100-broker estate, each
beside its "floor" (a bare Pulumi-mocks program registering the same number of trivial resources).

Run from the repo root:  python -m bench.render_bench   (or: python bench/render_bench.py)

Prints a markdown table (case, resources, render s, floor s, ratio, target, verdict) and notes. Targets are
reported as PASS/MISS, never asserted:
  - prod renders in under 1 s (best of --runs, in a process whose imports are warm);
  - at 100 brokers the render costs at most 1.5x the floor.
When the broker ratio misses, a breakdown of where the time goes follows (skip it with --no-breakdown).

Device cases (bench/device_stack.py: the prod stack's settings with 1,000 and 10,000 devices, half certificate,
half password): each render, its floor and a same-shape floor run in processes of their own, so each peak RSS
(the process's high-water mark, VmHWM) is that run's alone. Targets, also PASS/MISS only:
  - 1,000 devices: the render costs at most 1.5x the floor;
  - 10,000 devices: the render completes with a peak RSS under 2 GiB.
The per-device cost (Pulumi resources and Kubernetes objects per certificate device and per password device) is
counted from what each render registered. `--devices-only` runs just these cases (about 2.5 minutes on 2 cores).

Nothing in the repository is written: seeds live in a temporary state dir, output in a temporary directory.
Default run: about 3 minutes on 2 cores, 2.5 of them the device cases (skip those with --no-devices).
--prod-iterations adds a 100-broker run at the supplied-password default of PBKDF2 iterations (about +1 minute); --profile adds cProfile
runs (slow).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import logging
import os
import pickle
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Iterator, Optional
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/render_bench.py` puts bench/, not the repo root, on sys.path
    sys.path.insert(0, str(ROOT))

_T0 = time.perf_counter()
import pulumi  # noqa: E402
from pulumi.runtime import mocks, settings  # noqa: E402
from pulumi.runtime.stack import run_pulumi_func  # noqa: E402
from pulumi.runtime.sync_await import _sync_await  # noqa: E402

from mqtt_estate.estate import engine, manifests  # noqa: E402
from mqtt_estate.estate import render as render_mod  # noqa: E402
from mqtt_estate.estate.engine import Registry, run_program  # noqa: E402
from mqtt_estate.estate.seed import load_or_create  # noqa: E402

IMPORT_S = time.perf_counter() - _T0

PROD_TARGET_S = 1.0
RATIO_TARGET = 1.5
PRODUCTION_ITERATIONS = 10_000
"""broker.auth.passwordIterations' default; it applies to supplied passwords only (generated ones: 101)."""
SYNTHETIC_STACK = "bench"


# ------------------------------------------------------------------------------------------------ floor

class FloorMocks(pulumi.runtime.Mocks):
    """The smallest possible mocks: a resource's state is its inputs."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}, None


class CountingMonitor(mocks.MockMonitor):
    def __init__(self, floor_mocks: FloorMocks):
        super().__init__(floor_mocks)
        self.count = 0

    def RegisterResource(self, request):
        if request.type != "pulumi:pulumi:Stack":
            self.count += 1
        return super().RegisterResource(request)


class Trivial(pulumi.CustomResource):
    def __init__(self, name: str, props: dict):
        super().__init__("bench:index:Trivial", name, props)


def mocks_run(body: Callable[[], None]) -> int:
    """Run `body` as a bare Pulumi-mocks program (a fresh root stack, as estate.engine does); return its count."""
    settings.reset_options(project="bench-floor", stack="floor")
    monitor = CountingMonitor(FloorMocks())
    mocks.set_mocks(monitor.mocks, project="bench-floor", stack="floor", preview=False, monitor=monitor,
                    logger=logging.getLogger("bench.floor"))
    _sync_await(run_pulumi_func(body))
    return monitor.count


def floor_run(n: int) -> int:
    """The floor: n trivial CustomResources, one small input each."""
    def body():
        for i in range(n):
            Trivial(f"r{i}", {"index": i})
    return mocks_run(body)


def replay_run(registry: Registry) -> int:
    """A fatter floor: one trivial CustomResource per registered resource, carrying that resource's inputs
    (echoed back as outputs: no TLS, no recording, no components). Separates Pulumi's cost of moving the
    estate's property volume from the engine's own work."""
    def body():
        for i, res in enumerate(registry.resources):
            Trivial(f"r{i}", dict(res.inputs))
    return mocks_run(body)


# ------------------------------------------------------------------------------------- synthetic estate

SYNTHETIC_PROGRAM = """\
# Generated by bench/render_bench.py: {brokers} Pki + MosquittoBroker pairs built by stacks.build.build_estate.
import sys
sys.path.insert(0, {root!r})
from bench.render_bench import synthetic_estate
synthetic_estate({brokers}, {iterations}, {password_users}, {cert_users})
"""


def prod_values() -> dict:
    """The prod stack file's `mqtt-estate:` values (key without the project prefix -> value)."""
    import yaml

    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    return {key.split(":", 1)[1]: value for key, value in document["config"].items()
            if key.startswith("mqtt-estate:")}


def synthetic_values(base: dict, i: int, iterations: int, password_users: int, cert_users: int) -> dict:
    """Stack values of synthetic broker i: the prod stack's broker settings (listeners, mTLS, Sparkplug ACLs,
    persistence, PKI) as ONE broker (enterprise-broker preset, no HA tier), own name, namespace and users."""
    values = {key: value for key, value in base.items() if key != "frontend"}
    broker = {key: value for key, value in base["broker"].items() if key != "ha"}
    broker.update(name=f"mqtt-{i:03d}", preset="enterprise-broker",
                  auth={**broker.get("auth", {}), "passwordIterations": iterations})
    values.update(namespace={"name": f"site-{i:03d}"}, broker=broker, users=(
        [{"name": f"ops-{i:03d}-{j}", "role": "admin", "auth": "password"} for j in range(password_users)]
        + [{"name": f"edge-{i:03d}-{j}", "role": "edge-node", "auth": "certificate", "groups": ["Factory"]}
           for j in range(cert_users)]))
    return values


def synthetic_estate(brokers: int, iterations: int, password_users: int, cert_users: int) -> None:
    """Body of the synthetic program: `brokers` validated estates, each built by stacks.build.build_estate (the
    wiring __main__.py uses) into one Pki + MosquittoBroker pair; passwords are generated by pulumi-random."""
    from mqtt_estate.stacks.build import build_estate
    from mqtt_estate.stacks.load import validate_estate

    base = prod_values()
    endpoints = {}
    for i in range(brokers):
        values = synthetic_values(base, i, iterations, password_users, cert_users)
        estate = validate_estate(values, {}, f"synthetic broker {i}")
        built = build_estate(estate, lambda key: None)
        endpoints[estate.broker.name] = built.endpoints
    pulumi.export("endpoints", endpoints)


# ------------------------------------------------------------------------------------------- measuring

class Clock:
    """Named time accumulators, safe across threads. `thread=True` spans use per-thread CPU time, which
    leaves out time spent waiting for the GIL (the mock monitor runs in Pulumi's executor threads)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, key: str, seconds: float) -> None:
        with self._lock:
            self.seconds[key] = self.seconds.get(key, 0.0) + seconds
            self.calls[key] = self.calls.get(key, 0) + 1

    @contextlib.contextmanager
    def span(self, key: str, thread: bool = False) -> Iterator[None]:
        now = time.thread_time if thread else time.perf_counter
        start = now()
        try:
            yield
        finally:
            self.add(key, now() - start)


@contextlib.contextmanager
def instrumented(clock: Clock) -> Iterator[Clock]:
    """Time PBKDF2 (wall, summed over threads), and the engine's mock-side work in CPU seconds: the providers
    (real TLS keys/certificates, random passwords) and the registry recording. Patched in this process only."""
    import mqtt_estate.components.passwords as pw

    patched = []

    def patch(owner, attr, wrapper):
        patched.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, wrapper(getattr(owner, attr)))

    def pbkdf2(original):
        def timed(*args, **kwargs):
            with clock.span("PBKDF2 password hashes (wall, summed over threads)"):
                return original(*args, **kwargs)
        return timed

    def provider(original):
        def timed(self, args):
            with clock.span("mocks: EstateMocks.new_resource, i.e. TLS/random providers (CPU)", thread=True):
                return original(self, args)
        return timed

    def recording(original):
        def timed(self, request):
            start = time.thread_time()
            response = original(self, request)
            clock.add("mocks: RecordingMonitor.RegisterResource incl. providers (CPU)", time.thread_time() - start)
            return response
        return timed

    patch(pw, "hash_password", pbkdf2)
    patch(engine.EstateMocks, "new_resource", provider)
    patch(engine.RecordingMonitor, "RegisterResource", recording)
    try:
        yield clock
    finally:
        for owner, attr, original in reversed(patched):
            setattr(owner, attr, original)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    gc.collect()  # start every measured run from the same heap state
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def own_peak_rss_mib() -> float:
    """This process's own peak RSS: Linux's VmHWM, which a new program image starts afresh. (ru_maxrss of a child
    starts at its parent's RSS when it was forked, and survives exec: a worker started by a 350 MiB bench process
    would report at least 350 MiB.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


@dataclass
class Case:
    name: str
    target: str
    resources: int = 0
    render_s: list[float] = field(default_factory=list)
    floor_s: list[float] = field(default_factory=list)
    rss_mib: float = 0.0
    notes: list[str] = field(default_factory=list)
    registry_blob: bytes = b""
    """The last run's registry, pickled: one untracked bytes object, so it adds nothing to GC work later."""

    def registry(self) -> Registry:
        return pickle.loads(self.registry_blob)

    @property
    def render(self) -> float:
        return min(self.render_s)

    @property
    def floor(self) -> float:
        return min(self.floor_s)

    @property
    def ratio(self) -> float:
        return self.render / self.floor

    def verdict(self) -> str:
        if self.target.startswith("<"):
            return "PASS" if self.render < PROD_TARGET_S else "MISS"
        if self.target.startswith("≤"):
            return "PASS" if self.ratio <= RATIO_TARGET else "MISS"
        return "-"


def measure_floor(case: Case, runs: int) -> None:
    for _ in range(runs):
        seconds, count = timed(lambda: floor_run(case.resources))
        case.floor_s.append(seconds)
        if count != case.resources:
            case.notes.append(f"floor registered {count} resources, expected {case.resources}")


def describe_clock(clock: Clock, runs: int) -> str:
    return "; ".join(f"{key}: {seconds / runs:.2f} s" for key, seconds in clock.seconds.items())


def bench_stack(stack: str, target: str, runs: int, work: Path) -> Case:
    case = Case(f"{stack} stack (Pulumi.{stack}.yaml)", target)
    clock = Clock()
    with instrumented(clock):
        for run in range(runs):
            out = work / "out" / f"{stack}-{run}"
            seconds, result = timed(lambda: render_mod.render(stack, out=out, state_dir=work / "state"))
            case.render_s.append(seconds)
            case.resources = len(result.registry.resources)
    case.registry_blob = pickle.dumps(result.registry)
    hashes = clock.calls.get("PBKDF2 password hashes (wall, summed over threads)", 0) // runs
    iterations = result.stack_file.estate.broker.auth.password_iterations
    case.notes.append(f"{hashes} password hash(es) at {iterations} PBKDF2 iterations; per render: "
                      + describe_clock(clock, runs))
    measure_floor(case, runs)
    case.rss_mib = peak_rss_mib()
    return case


class Synthetic:
    def __init__(self, work: Path, brokers: int, iterations: int, password_users: int, cert_users: int):
        self.work, self.brokers, self.iterations = work, brokers, iterations
        self.password_users, self.cert_users = password_users, cert_users
        program_dir = Path(tempfile.mkdtemp(prefix=f"program-{iterations}-", dir=work))
        self.program = program_dir / "__main__.py"
        self.program.write_text(SYNTHETIC_PROGRAM.format(
            root=str(ROOT), brokers=brokers, iterations=iterations, password_users=password_users,
            cert_users=cert_users))
        self.seed = load_or_create(work / "state" / SYNTHETIC_STACK / "seed.json")
        self.runs = 0

    def render(self, clock: Clock) -> Registry:
        """Program run + every file render() writes, into a fresh temporary directory."""
        self.runs += 1
        with clock.span("program (run_program)"):
            registry = run_program(self.program, SYNTHETIC_STACK, {}, [], self.seed)
        out = self.work / "out" / f"synthetic-{self.iterations}-{self.runs}"
        with clock.span("write: manifests, pod files, tree (estate.render.write_render)"):
            render_mod.write_render(SYNTHETIC_STACK, None, registry, out)
        return registry

    def case(self, runs: int, floor_runs: int, floor_from: Optional[Case] = None) -> Case:
        users = self.password_users + self.cert_users
        case = Case(f"{self.brokers} brokers, synthetic ({self.iterations} PBKDF2 iter.)",
                    f"≤ {RATIO_TARGET:g}x floor")
        clock = Clock()
        with instrumented(clock):
            for _ in range(runs):
                seconds, registry = timed(lambda: self.render(clock))
                case.render_s.append(seconds)
                case.resources = len(registry.resources)
        case.registry_blob = pickle.dumps(registry)
        del registry  # measure the floor on a heap without the render's objects
        case.notes.append(f"{users} users per broker ({self.password_users} password, generated by pulumi-random; "
                          f"{self.cert_users} certificate), {self.iterations} PBKDF2 iterations")
        case.notes.append(f"per render (mean of {runs}): " + describe_clock(clock, runs))
        if floor_from is not None and floor_from.resources == case.resources:
            case.floor_s = list(floor_from.floor_s)
            case.notes.append(f"floor: reused from '{floor_from.name}' (same resource count)")
        else:
            measure_floor(case, floor_runs)
        case.rss_mib = peak_rss_mib()
        return case


def policy_timing(name: str, registry: Registry, runs: int) -> tuple:
    """The whole pack over one registry: what `estate policy`, `render` and `up` add before writing anything."""
    from mqtt_estate.estate.policy_run import checked_resources, load_policies, mandatory, run_policies

    policies = load_policies()
    best, violations = min((timed(lambda: run_policies(registry, "bench", policies=policies))
                            for _ in range(runs)), key=lambda pair: pair[0])
    hard = len(mandatory(violations))
    return (name, checked_resources(registry), len(policies), f"{best:.3f}", hard,
            len(violations) - hard)


def breakdown(synthetic: Synthetic, case: Case) -> list[str]:
    """Where the synthetic render's time goes: Pulumi's property volume, garbage collection, YAML emitting."""
    import yaml

    lines = []
    registry = case.registry()
    seconds, count = timed(lambda: replay_run(registry))
    lines.append(f"the same {count} resources replayed as trivial CustomResources carrying their real inputs (echo "
                 f"mocks: no TLS, no recording, no components): {seconds:.2f} s = {seconds / case.floor:.2f}x floor; "
                 f"the render is {case.render / seconds:.2f}x this replay")
    objects = manifests.kubernetes_objects(registry)
    start = time.perf_counter()
    python_yaml = [manifests.to_yaml(o) for o in objects]
    python_s = time.perf_counter() - start
    if getattr(yaml, "__with_libyaml__", False):
        class CDumper(yaml.CSafeDumper):
            pass
        CDumper.add_representer(str, manifests._str)
        start = time.perf_counter()
        c_yaml = [yaml.dump(o, Dumper=CDumper, sort_keys=False, default_flow_style=False, width=120) for o in objects]
        c_s = time.perf_counter() - start
        yaml_line = (f"YAML for {len(objects)} objects: {python_s:.2f} s with estate/manifests.py's dumper "
                     f"(libyaml when installed), {c_s:.2f} s with libyaml's CSafeDumper "
                     f"(output byte-identical: {'yes' if c_yaml == python_yaml else 'NO'})")
    else:
        yaml_line = f"YAML for {len(objects)} objects: {python_s:.2f} s (libyaml not available)"
    del registry, objects, python_yaml

    # the engine pauses the cyclic collector while the program runs and freezes what the run leaves
    # (estate/engine.py _collector_paused); the floor leaves it on
    with mock.patch.object(engine, "_collector_paused", contextlib.nullcontext):
        collector_on, _ = timed(lambda: synthetic.render(Clock()))
    gc.collect()
    with gc_paused():
        floor_paused, _ = timed(lambda: floor_run(case.resources))
    gc.collect()
    lines.append(f"cyclic GC: the render with the engine's collector pause switched off takes {collector_on:.2f} s "
                 f"(vs {case.render:.2f} s); the floor with the collector paused takes {floor_paused:.2f} s "
                 f"(vs {case.floor:.2f} s)")
    lines.append(yaml_line)
    return lines


def profile(fn: Callable[[], object], path: Path, title: str, top: int = 30) -> str:
    """cProfile of the main thread (wall clock) merged with the mock monitor's executor threads (CPU time)."""
    profilers: list[cProfile.Profile] = []
    local = threading.local()
    original = engine.RecordingMonitor.RegisterResource

    def profiled(self, request):
        profiler = getattr(local, "profiler", None)
        if profiler is None:
            profiler = local.profiler = cProfile.Profile(time.thread_time)
            profilers.append(profiler)
        profiler.enable()
        try:
            return original(self, request)
        finally:
            profiler.disable()

    main = cProfile.Profile()  # wall clock: time.thread_time is a system call and would swamp call-heavy code
    engine.RecordingMonitor.RegisterResource = profiled
    try:
        main.enable()
        fn()
        main.disable()
    finally:
        engine.RecordingMonitor.RegisterResource = original
    stats = pstats.Stats(main)
    for profiler in profilers:
        stats.add(profiler)
    path.parent.mkdir(parents=True, exist_ok=True)
    stats.dump_stats(str(path))
    text = io.StringIO()
    stats.stream = text
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return (f"\n--- cProfile of {title} (main thread wall clock + mock-monitor threads CPU time; "
            f"cumulative, then tottime, top {top}; {path}) ---\n{text.getvalue()}")


# ----------------------------------------------------------------------------------------- device cases

DEVICE_COUNTS = (1_000, 10_000)
DEVICE_RSS_TARGET_MIB = 2048
DEVICE_NAME = re.compile(r"(?:cell|sensor)-\d{5}")
"""bench/device_stack.py names certificate devices cell-NNNNN and password devices sensor-NNNNN."""
DEVICE_STACK = "devices"


class Replayed(pulumi.CustomResource):
    def __init__(self, typ: str, name: str, props: dict):
        super().__init__(typ, name, props)


def shape_replay_run(registry: Registry) -> int:
    """The same-shape floor: every registered resource again, under its own type token, carrying its real inputs
    and one property per output it had (what a generated SDK class declares, so Pulumi makes the same Outputs),
    with the floor's echo mocks: no TLS, no recording, no dependencies between resources. What Pulumi itself
    costs for this many resources of these kinds."""
    def body():
        for i, res in enumerate(registry.resources):
            if res.custom:
                props = dict(res.inputs)
                props.update({key: None for key in res.outputs if key not in props})
                Replayed(res.type, f"r{i}", props)
            else:
                pulumi.ComponentResource(res.type, f"r{i}", None)
    return mocks_run(body)


def device_costs(registry: Registry, objects: list[dict]) -> dict:
    """Pulumi resources and Kubernetes objects per certificate and per password device, counted from what the
    program registered: a resource is a device's when its name holds the device's name (its key, CSR, certificate,
    generated password; before grouping, its own Secret); a client-certificate bundle Secret counts 1/n for each of
    its n users (the estate's own certificate users' shares count as shared); everything else is shared."""
    from mqtt_estate.components.client_bundles import bundle_users

    cert_devices = {m.group(0) for m in map(DEVICE_NAME.search, (u["name"] for u in
                    registry.stack_outputs.get("users", []) if u["auth"] == "certificate")) if m}
    password_devices = {m.group(0) for m in map(DEVICE_NAME.search, (u["name"] for u in
                        registry.stack_outputs.get("users", []) if u["auth"] == "password")) if m}
    counts = {"cert": [0.0, 0.0], "password": [0.0, 0.0], "shared": [0.0, 0.0]}
    bundles = {o["metadata"]["name"]: bundle_users(o) for o in objects if bundle_users(o)}
    for res in registry.resources:
        k8s = res.custom and res.type.startswith("kubernetes:")
        found = DEVICE_NAME.search(res.name)
        name = res.inputs.get("metadata", {}).get("name") if k8s else None
        if found and found.group(0) in cert_devices:
            shares = {"cert": 1.0}
        elif found and found.group(0) in password_devices:
            shares = {"password": 1.0}
        elif name in bundles:
            users = bundles[name]
            devices = sum(1 for user in users if user in cert_devices) / len(users)
            shares = {"cert": devices, "shared": 1.0 - devices}
        else:
            shares = {"shared": 1.0}
        for kind, share in shares.items():
            counts[kind][0] += share
            counts[kind][1] += share if k8s else 0.0
    per = {"cert": len(cert_devices), "password": len(password_devices)}
    return {"devices": per,
            "per_device": {kind: [value / per[kind] if per[kind] else 0.0 for value in counts[kind]]
                           for kind in ("cert", "password")},
            "shared": counts["shared"]}


def _device_worker(args) -> dict:
    """One measured run in this (fresh) process, after a warm-up that loads every module."""
    work = Path(args.work)
    if args.device_worker == "render":
        render_mod.render("dev", out=work / "out" / "warm-up", state_dir=work / "state")
        gc.collect()
        seconds, result = timed(lambda: render_mod.render(DEVICE_STACK, Path(args.stack_file),
                                                          out=work / "out" / DEVICE_STACK, state_dir=work / "state"))
        rss = own_peak_rss_mib()
        Path(args.registry).write_bytes(pickle.dumps(result.registry))
        from mqtt_estate.estate.policy_run import mandatory, run_policies
        policy_s, violations = timed(lambda: run_policies(result.registry, DEVICE_STACK))
        return {"seconds": seconds, "resources": len(result.registry.resources),
                "objects": len(result.objects), "rss_mib": rss, "policy_s": policy_s,
                "mandatory": len(mandatory(violations)), **device_costs(result.registry, result.objects)}
    if args.device_worker == "floor":
        floor_run(10)
        seconds, count = timed(lambda: floor_run(args.resources))
        return {"seconds": seconds, "resources": count, "rss_mib": own_peak_rss_mib()}
    registry = pickle.loads(Path(args.registry).read_bytes())
    mocks_run(lambda: None)
    seconds, count = timed(lambda: shape_replay_run(registry))
    return {"seconds": seconds, "resources": count, "rss_mib": own_peak_rss_mib()}


def _run_worker(kind: str, work: Path, **options) -> dict:
    command = [sys.executable, "-m", "bench.render_bench", "--device-worker", kind, "--work", str(work)]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"device worker {kind} failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class DeviceCase:
    devices: int
    cert: int
    password: int
    runs: list[dict] = field(default_factory=list)
    floors: list[dict] = field(default_factory=list)
    shapes: list[dict] = field(default_factory=list)

    @property
    def render(self) -> float:
        return min(r["seconds"] for r in self.runs)

    @property
    def floor(self) -> float:
        return min(f["seconds"] for f in self.floors)

    @property
    def ratio(self) -> float:
        return self.render / self.floor

    @property
    def render_rss(self) -> float:
        return max(r["rss_mib"] for r in self.runs)

    @property
    def floor_rss(self) -> float:
        return max(f["rss_mib"] for f in self.floors)

    @property
    def target(self) -> str:
        return (f"≤ {RATIO_TARGET:g}x floor" if self.devices <= 1_000
                else f"completes, peak RSS < {DEVICE_RSS_TARGET_MIB // 1024} GiB")

    def verdict(self) -> str:
        if self.devices <= 1_000:
            return "PASS" if self.ratio <= RATIO_TARGET else "MISS"
        return "PASS" if self.runs and self.render_rss < DEVICE_RSS_TARGET_MIB else "MISS"


def bench_devices(work: Path, counts: tuple[int, ...], runs: int) -> list[DeviceCase]:
    """Each count as half certificate, half password devices: a plant has both, and the per-device cost of each
    kind is counted separately from the same render (device_costs), so two rows say what four would."""
    from bench.device_stack import write_device_stack

    cases = []
    for devices in counts:
        case = DeviceCase(devices, devices // 2, devices - devices // 2)
        stack_file = write_device_stack(work / f"devices-{devices}.yaml", case.cert, case.password)
        registry = work / f"registry-{devices}.pickle"
        repeat = runs if devices <= 1_000 else 1
        for _ in range(repeat):
            case.runs.append(_run_worker("render", work, stack_file=stack_file, registry=registry))
        resources = case.runs[0]["resources"]
        for _ in range(repeat):
            case.floors.append(_run_worker("floor", work, resources=resources))
        case.shapes.append(_run_worker("shape", work, registry=registry))
        registry.unlink()
        cases.append(case)
    return cases


def device_table(cases: list[DeviceCase]) -> str:
    rows = [("case", "Pulumi resources", "k8s objects", "render s", "floor s", "ratio", "same-shape floor s",
             "render peak RSS MiB", "floor peak RSS MiB", "target", "verdict"),
            ("---", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "---", "---")]
    for c in cases:
        first = c.runs[0]
        rows.append((f"{c.devices:,} devices ({c.cert:,} certificate + {c.password:,} password)",
                     f"{first['resources']:,}", f"{first['objects']:,}", f"{c.render:.2f}", f"{c.floor:.2f}",
                     f"{c.ratio:.2f}x", f"{min(s['seconds'] for s in c.shapes):.2f}", f"{c.render_rss:.0f}",
                     f"{c.floor_rss:.0f}", c.target, c.verdict()))
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def device_cost_table(cases: list[DeviceCase]) -> str:
    rows = [("case", "per certificate device: Pulumi resources", "Kubernetes objects",
             "per password device: Pulumi resources", "Kubernetes objects", "shared: Pulumi resources",
             "Kubernetes objects"),
            ("---", "--:", "--:", "--:", "--:", "--:", "--:")]
    for c in cases:
        costs = c.runs[0]
        cert, password, shared = costs["per_device"]["cert"], costs["per_device"]["password"], costs["shared"]
        rows.append((f"{c.devices:,} devices", f"{cert[0]:.3f}", f"{cert[1]:.3f}", f"{password[0]:.3f}",
                     f"{password[1]:.3f}", f"{shared[0]:.0f}", f"{shared[1]:.0f}"))
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def print_devices(cases: list[DeviceCase], runs: int) -> None:
    print("\n### Devices (`bench/device_stack.py`: prod settings, half certificate, half password devices)\n")
    print(device_table(cases))
    print()
    print(device_cost_table(cases))
    print()
    print(f"- render s: estate.render.render (stack file, program under mocks, every file written), best of {runs} "
          "at 1,000 devices and one run at 10,000, each in a fresh process after a warm-up render of the dev stack. "
          "Floor: the same number of trivial CustomResources in a fresh process. Same-shape floor: every resource "
          "the render registered again under its own type, with its real inputs and output properties, echo mocks "
          "(bench.render_bench.shape_replay_run): what Pulumi alone costs for resources of these kinds.")
    print("- peak RSS: the high-water mark (VmHWM) of each run's own process, imports and the warm-up included (the "
          "floor's process imports the same modules).")
    for c in cases:
        first = c.runs[0]
        shape = min(s["seconds"] for s in c.shapes)
        print(f"- {c.devices:,} devices: render {c.render / shape:.2f}x the same-shape floor, which is "
              f"{shape / c.floor:.2f}x the trivial floor. The policy pack (what `render` and `up` run first) took "
              f"{min(r['policy_s'] for r in c.runs):.2f} s more, {first['mandatory']} mandatory violation(s).")


# ---------------------------------------------------------------------------------------------- output

def table(cases: list[Case]) -> str:
    rows = [("case", "resources", "render s", "floor s", "ratio", "target", "verdict"),
            ("---", "--:", "--:", "--:", "--:", "---", "---")]
    for c in cases:
        rows.append((c.name, str(c.resources), f"{c.render:.3f}", f"{c.floor:.3f}", f"{c.ratio:.2f}x",
                     c.target, c.verdict()))
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def single_hash_seconds(iterations: int) -> float:
    from mqtt_estate.components.passwords import deterministic_salt, hash_password
    start = time.perf_counter()
    hash_password("x" * 32, deterministic_salt("bench", "user"), iterations)
    return time.perf_counter() - start


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render_bench",
                                     description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--runs", type=int, default=3, help="renders per stack, best reported (default 3)")
    parser.add_argument("--brokers", type=int, default=100, help="brokers in the synthetic estate (default 100)")
    parser.add_argument("--broker-runs", type=int, default=2, help="renders of the synthetic estate (default 2)")
    parser.add_argument("--iterations", type=int, default=1_000,
                        help="PBKDF2 iterations in the synthetic estate (default 1000, the schema minimum)")
    parser.add_argument("--password-users", type=int, default=1, help="password users per broker (default 1)")
    parser.add_argument("--cert-users", type=int, default=2, help="certificate users per broker (default 2)")
    parser.add_argument("--prod-iterations", action="store_true",
                        help=f"add one synthetic render at {PRODUCTION_ITERATIONS} iterations (about +1 min)")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                        help="skip the breakdown that runs when the broker ratio misses")
    parser.add_argument("--profile", type=Path, nargs="?", const=Path(tempfile.gettempdir()) / "render-bench-prof",
                        metavar="DIR", help="cProfile prod and one synthetic render (stats to stderr, .prof to DIR)")
    devices = parser.add_mutually_exclusive_group()
    devices.add_argument("--devices-only", action="store_true", help="run only the device cases")
    devices.add_argument("--no-devices", dest="devices", action="store_false", help="skip the device cases")
    parser.add_argument("--device-counts", default=",".join(str(n) for n in DEVICE_COUNTS),
                        help="device cases, comma-separated (default 1000,10000)")
    parser.add_argument("--device-runs", type=int, default=2,
                        help="renders (and floors) per device case up to 1,000 devices, best reported (default 2)")
    for hidden in ("--device-worker", "--work", "--stack-file", "--registry"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--resources", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    logging.getLogger("estate.pulumi").setLevel(logging.WARNING)
    if args.device_worker:
        print(json.dumps(_device_worker(args)))
        return 0
    started = time.perf_counter()
    cases: list[Case] = []
    device_cases: list[DeviceCase] = []
    extra: list[str] = []
    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        work = Path(tmp)
        if not args.devices_only:
            cold_s, _ = timed(lambda: render_mod.render("prod", out=work / "out" / "cold", state_dir=work / "state"))
            cases.append(bench_stack("dev", "-", args.runs, work))
            cases.append(bench_stack("prod", f"< {PROD_TARGET_S:g} s", args.runs, work))
            synthetic = Synthetic(work, args.brokers, args.iterations, args.password_users, args.cert_users)
            broker_case = synthetic.case(args.broker_runs, args.broker_runs)
            cases.append(broker_case)
            if args.prod_iterations:
                slow = Synthetic(work, args.brokers, PRODUCTION_ITERATIONS, args.password_users, args.cert_users)
                cases.append(slow.case(1, 1, floor_from=broker_case))
            if args.breakdown and broker_case.verdict() == "MISS":
                extra = breakdown(synthetic, broker_case)
            hash_s = single_hash_seconds(PRODUCTION_ITERATIONS)
            policy_rows = [policy_timing(case.name, case.registry(), args.runs) for case in cases[1:3]]
            if args.profile is not None:
                print(profile(lambda: render_mod.render("prod", out=work / "out" / "prof", state_dir=work / "state"),
                              args.profile / "prod.prof", "prod render"), file=sys.stderr)
                print(profile(lambda: synthetic.render(Clock()), args.profile / "synthetic.prof",
                              f"{args.brokers}-broker render"), file=sys.stderr)
        if args.devices or args.devices_only:
            counts = tuple(int(n) for n in args.device_counts.split(",") if n.strip())
            device_cases = bench_devices(work, counts, args.device_runs)
    total = time.perf_counter() - started

    print(f"## Offline render benchmark ({os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"pulumi {version('pulumi')}, pulumi-kubernetes {version('pulumi_kubernetes')})\n")
    if cases:
        print_classic(args, cases, extra, broker_case, cold_s, hash_s, policy_rows)
    if device_cases:
        print_devices(device_cases, args.device_runs)
    targets = [] if args.devices_only else [f"prod < {PROD_TARGET_S:g} s",
                                            f"{args.brokers} brokers ≤ {RATIO_TARGET:g}x floor"]
    targets += [f"{c.devices:,} devices ≤ {RATIO_TARGET:g}x floor" if c.devices <= 1_000
                else f"{c.devices:,} devices complete under {DEVICE_RSS_TARGET_MIB // 1024} GiB peak RSS"
                for c in device_cases]
    print(f"\nTargets: {'; '.join(targets)}. Whole benchmark: {total:.0f} s.")
    return 0


def print_classic(args, cases: list[Case], extra: list[str], broker_case: Case, cold_s: float, hash_s: float,
                  policy_rows: list[tuple]) -> None:
    print(table(cases))
    print()
    print(f"- render s / floor s: best of {args.runs} runs (stacks) or {args.broker_runs} (synthetic), imports warm. "
          "Floor: a bare Pulumi-mocks program (fresh root stack, mocks echo inputs) registering the same number of "
          "trivial CustomResources, one small input each, no components.")
    print("- dev/prod render = estate.render.render: stack file, program under mocks with real TLS keys and "
          "PBKDF2 hashes at the stacks' own iteration counts, every file written. Synthetic render = "
          f"a generated program building {args.brokers} Pki + MosquittoBroker pairs with stacks.build.build_estate "
          "(prod stack broker settings as one enterprise-broker without the HA tier, own name/namespace/users), "
          "run by estate.engine.run_program, then the same files written.")
    print(f"- cold: the first render in this process (prod) took {cold_s:.3f} s after {IMPORT_S:.3f} s of importing "
          "pulumi + estate: a fresh `python -m estate render` process pays these, not the warm numbers below.")
    serial_hash_s = hash_s * args.brokers * args.password_users
    print(f"- PBKDF2: one {PRODUCTION_ITERATIONS}-iteration hash takes {hash_s:.3f} s here; the synthetic estate uses "
          f"{args.iterations} iterations and {args.password_users} password user per broker so PBKDF2 does not "
          f"dominate (at {PRODUCTION_ITERATIONS} it would add at least ~{serial_hash_s:.0f} s: "
          "each broker hashes inside an Output.apply on the event loop, so brokers hash one after another; "
          "--prod-iterations measures it).")
    for c in cases:
        for note in c.notes:
            print(f"- {c.name}: {note}")
    if extra:
        print(f"\nBreakdown ({broker_case.name} missed {RATIO_TARGET:g}x):")
        for line in extra:
            print(f"- {line}")
    print("\n### Policy pack, offline (`estate.policy_run.run_policies`, best of "
          f"{args.runs})\n")
    print("| case | resources | policies | policy run s | mandatory | advisory |")
    print("| --- | --: | --: | --: | --: | --: |")
    for row in policy_rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    print("\nPeak RSS of the process (cumulative, ru_maxrss) after each case:")
    for c in cases:
        print(f"- {c.name}: {c.rss_mib:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
