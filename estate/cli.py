"""Command line: `python -m estate render|up|check|health|connection|diff|users|policy|schema`.

render, up, policy and check run this package's own program or, with `--program DIR`, a Pulumi program of your
own that uses the components (estate/program.py says which, and where each writes).

Exit 0 ok, 2 configuration error, 3 mandatory policy violation, 1 anything else."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from ..stacks.errors import StackConfigError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_POLICY = 0, 1, 2, 3


def _policy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy-config", type=Path, help="policy pack config (JSON, as for pulumi preview)")
    parser.add_argument("--i-accept-mandatory-policy-violations", dest="accept_violations", action="store_true",
                        help="render/boot even when mandatory policies fail (loudly reported)")


def _program_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--program", type=Path, metavar="DIR",
                        help="a Pulumi project directory (Pulumi.yaml, Pulumi.<stack>.yaml) whose Python program "
                             "uses the components (default: the project around the current directory, else this "
                             "package's own program)")


def _program(args):
    """The program the command runs (estate/program.py), found once."""
    from .program import find_program

    if getattr(args, "found_program", None) is None:
        args.found_program = find_program(args.program)
    return args.found_program


def _parser() -> argparse.ArgumentParser:
    # installed, the console script is `mqtt-estate` (pyproject.toml); in a checkout, `python -m estate`
    prog = "mqtt-estate" if Path(sys.argv[0]).name == "mqtt-estate" else "python -m estate"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="render every Kubernetes object and broker file of a stack")
    render.add_argument("--stack", required=True)
    render.add_argument("--config", type=Path, help="stack file to use instead of Pulumi.<stack>.yaml")
    render.add_argument("--out", type=Path, help="output directory (default out/<stack> in the program's directory)")
    _program_flag(render)
    _policy_flags(render)

    up = sub.add_parser("up", help="render, then run the estate")
    up.add_argument("--local", action="store_true", required=True, help="run on 127.0.0.1 (the only mode here)")
    up.add_argument("--stack", required=True)
    up.add_argument("--config", type=Path)
    up.add_argument("--out", type=Path)
    up.add_argument("--smoke", action="store_true", help="run the smoke suite, then stop")
    up.add_argument("--monitoring", action="store_true",
                    help="also run Prometheus with the rendered PodMonitors and PrometheusRule (needs `prometheus`)")
    _program_flag(up)
    _policy_flags(up)

    policy = sub.add_parser("policy", help="run the policy pack on a stack offline (exit 3 on mandatory violations)")
    policy.add_argument("--stack", required=True)
    policy.add_argument("--config", type=Path)
    policy.add_argument("--policy-config", type=Path, help="policy pack config (JSON, as for pulumi preview)")
    _program_flag(policy)

    check = sub.add_parser("check", help="run the smoke suite against the running local estate, or any estate a "
                                         "connection file describes")
    check.add_argument("--local", action="store_true", help="the running local estate (the default without "
                                                             "--connection)")
    check.add_argument("--connection", type=Path,
                       help="connection file (default: .estate/local/connection.json of the program, as `up` wrote "
                            "it; format: `schema --connection`)")
    _program_flag(check)

    diff = sub.add_parser("diff", help="what a change will do, before it is merged (like pulumi preview --diff)")
    diff.add_argument("--stack", required=True)
    before = diff.add_mutually_exclusive_group(required=True)
    before.add_argument("--base", metavar="GIT_REF", help="compare the program and stack file at this git ref "
                                                          "with the working tree")
    before.add_argument("--old", type=Path, metavar="STACK_FILE", help="the stack file before the change")
    diff.add_argument("--config", type=Path, help="the stack file after the change (default Pulumi.<stack>.yaml)")
    diff.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    diff.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    _program_flag(diff)

    schema = sub.add_parser("schema", help="print the JSON Schema of the stack configuration")
    schema.add_argument("--provider", action="store_true",
                        help="print the component provider's Pulumi package schema instead "
                             "(schema/provider.schema.json)")
    schema.add_argument("--connection", action="store_true",
                        help="print the connection file's JSON Schema instead (schema/connection.schema.json)")
    from .operator_commands import add_parsers as operator_parsers
    operator_parsers(sub, _program_flag)
    from .users_command import add_parser as users_parser
    users_parser(sub, _program_flag)
    return parser


def _print_warnings(stack_file) -> None:
    """Settings that work but are most likely a mistake: one line each, naming the file read."""
    for line in stack_file.warnings:
        print(f"warning: {line}", file=sys.stderr)


def _gated(args):
    """Evaluate the stack and run the policy pack first; None (after printing why) when it must stop here."""
    from .policy_run import (checked_resources, load_policies, mandatory, read_overrides, report_text,
                                   run_policies)
    from .render import evaluate

    stack_file, registry = evaluate(args.stack, args.config, program=_program(args),
                                    control_plane=getattr(args, "control_plane", None))
    _print_warnings(stack_file)
    violations = run_policies(registry, args.stack, read_overrides(args.policy_config))
    failing = mandatory(violations)
    if failing and not getattr(args, "accept_violations", False):
        print(report_text(violations, len(load_policies()), checked_resources(registry)), file=sys.stderr)
        print(f"refusing: {len(failing)} mandatory policy violation(s); fix them or pass "
              "--i-accept-mandatory-policy-violations", file=sys.stderr)
        return None
    if failing:
        print(f"WARNING: going on despite {len(failing)} MANDATORY POLICY VIOLATION(S):", file=sys.stderr)
        for v in failing:
            print(f"WARNING:   [{v.policy}] {v.resource_type} {v.resource_name}: {v.message}", file=sys.stderr)
    return stack_file, registry


def cmd_policy(args) -> int:
    from .policy_run import (checked_resources, load_policies, mandatory, read_overrides, report_text,
                                   run_policies)
    from .render import evaluate

    stack_file, registry = evaluate(args.stack, args.config, program=_program(args))
    _print_warnings(stack_file)
    violations = run_policies(registry, args.stack, read_overrides(args.policy_config))
    print(report_text(violations, len(load_policies()), checked_resources(registry)))
    return EXIT_POLICY if mandatory(violations) else EXIT_OK


def _render(args, to_run: bool = False):
    """Evaluate, judge and write the render; `to_run`: refuse (before writing) a render with nothing to run here."""
    from .render import write_render

    from .output import check_replaceable

    out = args.out or _program(args).out_dir(args.stack)
    check_replaceable(out, "--out" if args.out else None)  # before the program runs: it would be replaced whole
    gated = _gated(args)
    if gated is None:
        return None
    if to_run:
        _refuse_nothing_to_run(gated[1])
    return write_render(args.stack, gated[0], gated[1], out)


def _refuse_nothing_to_run(registry) -> None:
    from .engine import EngineError
    from .local import local_workloads
    from .manifests import kubernetes_objects

    if not local_workloads(kubernetes_objects(registry)):
        raise EngineError(["nothing to run locally: the program registered no MosquittoBroker"])


def cmd_render(args) -> int:
    result = _render(args)
    if result is None:
        return EXIT_POLICY
    print((result.out / "resources.txt").read_text(), end="")
    print(f"\nrendered {len(result.objects)} Kubernetes objects to {result.out}")
    return EXIT_OK


def _stop_on_signal(signum, _frame):
    # The first stop signal wins; later ones must not interrupt the cleanup that stops the processes.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def cmd_up(args) -> int:
    # A background job of a non-interactive shell (`python -m estate up --local ... &` in a script) starts with
    # SIGINT ignored, and Python then installs no handler of its own: set both stop signals explicitly, before
    # anything starts, so Ctrl-C, `kill -INT` and `kill -TERM` all stop the estate and its processes.
    previous = {sig: signal.signal(sig, _stop_on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _up(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _up(args) -> int:
    from .aws_provider import ControlPlane

    # the moto_server that provisions the estate's AWS resources (started only if there are any) stays up as the
    # AWS control plane of the local run: the AWS IoT stand-ins read the bridges' policies back from it
    args.control_plane = ControlPlane()
    try:
        return _up_with(args)
    finally:
        args.control_plane.stop()


def _up_with(args) -> int:
    from .local import LocalEstate

    result = _render(args, to_run=True)
    if result is None:
        return EXIT_POLICY
    print(f"rendered {len(result.objects)} Kubernetes objects to {result.out}")
    with LocalEstate(result, _program(args).local_dir.resolve(), control_plane=args.control_plane) as local, \
            _local_prometheus(args, result, local) as prometheus:
        path = local.write_connection_file()
        for proc in local.processes:
            for lst in proc.listeners:
                print(f"  {proc.pod:<22} {lst['name']:<16} {lst['url']}")
        for standin in local.standins:
            print(f"  {standin.bridge:<22} {'cloud stand-in':<16} {standin.describe()['url']} "
                  f"(test tap mqtt://127.0.0.1:{standin.tap_port})")
        for sidecar in local.exporters + local.backups:
            for name, port in sidecar.named_ports.items():
                print(f"  {sidecar.pod:<22} {name:<16} http://127.0.0.1:{port}/metrics")
        if prometheus is not None:
            print(f"prometheus: {prometheus.url} (alerts: {prometheus.url}/alerts)")
        print(f"connection file: {path}")
        if args.smoke:
            return _smoke(json.loads(path.read_text()))
        try:  # from the moment the line is out, a stop signal is a clean stop
            print("estate is up; Ctrl-C stops it", flush=True)
            while all(p.process.poll() is None for p in local.processes):
                time.sleep(0.5)
            print("a process exited; stopping", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("stopping")
            return EXIT_OK


@contextlib.contextmanager
def _local_prometheus(args, result, local):
    """A real Prometheus over the local estate with `--monitoring` (estate/prometheus_local.py), else None."""
    if not args.monitoring:
        yield None
        return
    from .engine import EngineError
    from .local import free_port
    from .prometheus_local import LocalPrometheus

    if not any(obj["kind"] == "PodMonitor" for obj in result.objects):
        raise EngineError(["--monitoring: the program rendered no PodMonitor (set mqtt-estate:monitoring.enabled: "
                           "true in the stack file)"])
    with LocalPrometheus(result.objects, local.brokers + local.bridges + local.frontends,
                         local.workdir / "prometheus", free_port(local.taken_ports)) as prometheus:
        yield prometheus


def _smoke(connection: dict) -> int:
    """Run the smoke suite and print its report: exit 0 only when it checked something and all of it passed."""
    from .smoke import passed, report, run_smoke

    checks = run_smoke(connection)
    print(report(checks))
    return EXIT_OK if passed(checks) else EXIT_FAILED


def cmd_check(args) -> int:
    from .operator_commands import connection_for

    connection = connection_for(args, _program)  # a bad file: one line, exit 2 (a StackConfigError)
    return EXIT_FAILED if connection is None else _smoke(connection)


def cmd_diff(args) -> int:
    from .base_render import BaseRenderError, render_at_ref
    from .preview import as_json, markdown, steps, text
    from .provider_diff import kubernetes_config
    from .render import evaluate

    program = _program(args)
    new_file, new = evaluate(args.stack, args.config, program=program)
    _print_warnings(new_file)
    if args.base:
        if not program.typed:
            from .engine import EngineError

            raise EngineError([f"--base: only this checkout's own program is rendered at a git ref; for "
                                f"{program.entry.parent} compare two stack files with --old"])
        try:
            old, _ = render_at_ref(program.project.path.parent, args.base, args.stack, args.config,
                                   program.state_dir)
        except BaseRenderError as exc:
            print(f"error: --base {args.base}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        before = f"{args.base}"
    else:
        _, old = evaluate(args.stack, args.old, program=program)
        before = str(args.old)
    after = str(args.config) if args.config else "working tree"
    found = steps(old, new, kubernetes_config(new_file.pulumi_config))
    title = f"estate diff: stack {args.stack}, {before} -> {after}"
    sys.stdout.write({"text": text, "markdown": markdown}[args.format](found, title) if args.format != "json"
                     else as_json(found))
    return EXIT_OK


def cmd_schema(args) -> int:
    if args.connection:
        from .connection import schema_text

        sys.stdout.write(schema_text())
        return EXIT_OK
    if args.provider:
        from ..components.provider import schema_text

        sys.stdout.write(schema_text())
        return EXIT_OK
    from ..stacks.schema import stack_file_schema

    print(json.dumps(stack_file_schema(), indent=2, sort_keys=True))
    return EXIT_OK


def cmd_users(args) -> int:
    from .users_command import run

    return run(args, _program)


def cmd_health(args) -> int:
    from .operator_commands import run_health

    return run_health(args, _program)


def cmd_connection(args) -> int:
    from .operator_commands import run_connection

    return run_connection(args, _program)


COMMANDS = {"render": cmd_render, "up": cmd_up, "check": cmd_check, "schema": cmd_schema, "policy": cmd_policy,
            "users": cmd_users, "health": cmd_health, "connection": cmd_connection, "diff": cmd_diff}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if getattr(args, "stack", None) is not None:  # before it becomes any path (out/<stack>, seeds)
            from .output import check_stack_name

            check_stack_name(args.stack)
        return COMMANDS[args.command](args)
    except StackConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception as exc:  # a user never sees a traceback unless they ask for one
        engine = sys.modules.get("mqtt_estate.estate.engine")  # loaded if the program ran (not imported here: it is slow)
        if engine is not None and isinstance(exc, engine.EngineError) and not os.environ.get("ESTATE_DEBUG"):
            for problem in exc.problems:  # a resource the program registered is refused: one line per problem
                print(f"error: {problem}", file=sys.stderr)
            return EXIT_FAILED
        if os.environ.get("ESTATE_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
