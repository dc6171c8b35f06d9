"""The operator commands on an estate reached through a connection file (estate/connection.py), local or deployed:
`health` (estate/health.py) and `connection --port-forward` (estate/port_forward.py); `check` (cli.cmd_check)
finds its file here too."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

from .connection import load_connection

EXIT_OK, EXIT_FAILED = 0, 1
DEFAULT_TIMEOUT = 3.0
"""`health`: seconds per network step (connect, handshake, CONNACK, `$SYS` answer, stats)."""


def add_parsers(sub, program_flag: Callable[[argparse.ArgumentParser], None]) -> None:
    health = sub.add_parser("health", help="one line per broker, bridge and frontend: OK or what is wrong "
                                           "(exit 1 if anything failed)")
    health.add_argument("--connection", type=Path, metavar="FILE",
                        help="connection file of the estate (default: the running local estate's, "
                             ".estate/local/connection.json; format: `schema --connection`)")
    health.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"per network step (default {DEFAULT_TIMEOUT:g})")
    program_flag(health)

    connection = sub.add_parser("connection", help="write a connection file for a deployed stack, reached through "
                                                   "kubectl port-forward, and print the kubectl commands")
    connection.add_argument("--port-forward", action="store_true", required=True,
                            help="through kubectl port-forward (the only mode here)")
    connection.add_argument("--stack", required=True)
    connection.add_argument("--config", type=Path, help="stack file to use instead of Pulumi.<stack>.yaml")
    connection.add_argument("--host", default="127.0.0.1",
                            help="the address kubectl port-forward listens on (default 127.0.0.1)")
    connection.add_argument("--first-port", type=int, default=20000, metavar="PORT",
                            help="local ports are handed out from this one up (default 20000)")
    connection.add_argument("--out", type=Path, metavar="DIR",
                            help="directory for connection.json and its files (default .estate/<stack>/port-forward "
                                 "in the program's directory)")
    program_flag(connection)


def connection_for(args, program: Callable) -> Optional[dict]:
    """The checked connection file of --connection (a bad one: ConnectionFileError, exit 2), else the running local
    estate's; None (after saying why) when there is no local estate running."""
    if args.connection is not None:
        return load_connection(args.connection)
    path = program(args).local_dir / "connection.json"
    if not path.is_file():
        flag = f" --program {args.program}" if args.program else ""
        print(f"error: no running local estate ({path} not found; start one with "
              f"`python -m estate up --local{flag} --stack NAME`, or give --connection FILE)", file=sys.stderr)
        return None
    return load_connection(path)


def run_health(args, program: Callable) -> int:
    from .health import run_health as check

    if not args.timeout > 0:
        print("error: --timeout must be more than 0 seconds", file=sys.stderr)
        return 2
    conn = connection_for(args, program)
    if conn is None:
        return EXIT_FAILED
    from .connection import read_json

    credentials = read_json(Path(conn["credentials_file"]), conn["credentials_file"])
    return EXIT_OK if check(conn, credentials, args.timeout) else EXIT_FAILED


def run_connection(args, program: Callable) -> int:
    import json

    from .manifests import kubernetes_objects
    from .output import write_file
    from .port_forward import plan
    from .render import evaluate

    if not 1 <= args.first_port <= 65535:
        print("error: --first-port must be a port, 1-65535", file=sys.stderr)
        return 2
    found = program(args)
    stack_file, registry = evaluate(args.stack, args.config, program=found)
    for line in stack_file.warnings:
        print(f"warning: {line}", file=sys.stderr)
    made = plan(registry, kubernetes_objects(registry), args.stack, args.host, args.first_port)
    out = args.out or found.state_dir / args.stack / "port-forward"
    try:  # shown as the operator would type it
        out = out.resolve().relative_to(Path.cwd())
    except ValueError:
        pass
    for name, (content, secret) in made.files.items():
        write_file(out / name, content, secret)
    path = out / "connection.json"
    write_file(path, json.dumps(made.connection, indent=2) + "\n")
    print(f"wrote {path} ({len(made.files)} files beside it)")
    print("start the port forwards (each runs until stopped):")
    for command in made.commands:
        print(f"  {command}")
    print(f"then: python -m estate check --connection {path}")
    print(f"      python -m estate health --connection {path}")
    print("The CA, passwords, client certificates and stats password are the offline render's (this stack's seed): "
          "right for an estate applied from `estate render`. For one deployed with `pulumi up`, write the deployed "
          "values over them:")
    for name, command in made.secrets:
        print(f"  {command} > {out / name}")
    return EXIT_OK
