"""`python -m mqtt_estate.backup agent|init|list`: the command line of the sidecar, the initContainer and an operator.

Settings come from the environment the component sets (config.py); flags override them. A bad setting is one line
naming the variable and what it accepts, exit 2 (the same code as a requested restore that cannot be done: in both
cases the pod must not start as if nothing were wrong).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Mapping, Optional

from .config import Config, ConfigError, Target

PROG = "mqtt-estate-backup"
EXIT_CONFIG = 2


def non_negative(text: str) -> int:
    """A whole number >= 0 (argparse turns the ValueError into one usage line and exit 2)."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bucket", help="BACKUP_BUCKET")
    common.add_argument("--prefix", help="BACKUP_PREFIX")
    common.add_argument("--pod", help="POD_NAME: whose backups (the key is <prefix>/<pod>/mosquitto.db)")
    common.add_argument("--endpoint", help="BACKUP_ENDPOINT: an S3-compatible URL")
    common.add_argument("--region", help="BACKUP_REGION")
    common.add_argument("--data-dir", type=Path, help="BACKUP_DATA_DIR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{agent,init,list}")
    agent = sub.add_parser("agent", parents=[common], help="the sidecar: save and upload on a schedule")
    agent.add_argument("--pid-file", type=Path, help="BACKUP_PID_FILE")
    agent.add_argument("--interval", type=float, help="BACKUP_INTERVAL_SECONDS")
    agent.add_argument("--once", action="store_true", help="one backup now, then exit (0 on success, 1 on failure)")
    init = sub.add_parser("init", parents=[common], help="the initContainer: restore or recover before mosquitto")
    init.add_argument("--request", help="RESTORE_REQUEST: an id, applied once")
    init.add_argument("--target", help="RESTORE_TARGET: latest | a version id | an RFC 3339 time")
    listing = sub.add_parser("list", parents=[common], help="this pod's backups, newest first, verified")
    listing.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    listing.add_argument("--limit", type=non_negative, default=20, help="the newest N versions (default 20, 0: all)")
    listing.add_argument("--no-verify", action="store_true", help="metadata only, do not download the versions")
    return parser


def _config(args: argparse.Namespace, env: Optional[Mapping[str, str]]) -> Config:
    overrides = {"bucket": args.bucket, "prefix": args.prefix.strip("/") if args.prefix else None, "pod": args.pod,
                 "endpoint": args.endpoint, "region": args.region, "data_dir": args.data_dir,
                 "pid_file": getattr(args, "pid_file", None), "interval": getattr(args, "interval", None),
                 "restore_request": getattr(args, "request", None)}
    if getattr(args, "target", None):
        overrides["restore_target"] = Target.parse(args.target, "--target")
    if overrides["interval"] is not None and not 1 <= overrides["interval"] <= 86400:
        raise ConfigError(f"--interval={overrides['interval']:g}: expected seconds, 1-86400")
    config = Config.from_env(env, **overrides)
    config.require_bucket()
    return config


def _list(config: Config, args: argparse.Namespace) -> int:
    from .store import Store, StoreError, VerificationFailed  # noqa: PLC0415

    store = Store(config)
    rows = []
    try:
        versions = store.versions()
        for version in versions[:args.limit or None]:
            row = {"version": version.version_id, "latest": version.is_latest, "size": version.size,
                   "last_modified": version.last_modified.isoformat()}
            if args.no_verify:
                store.with_metadata(version)
                row["status"] = "not verified"
            else:
                try:
                    fetched = store.fetch(version)
                    s = fetched.summary
                    row["status"] = "verified"
                    row["contents"] = {"retained": s.retained, "messages": s.messages, "clients": s.clients,
                                       "subscriptions": s.subscriptions, "queued": s.client_messages}
                except VerificationFailed as exc:
                    row["status"] = f"FAILS VERIFICATION: {exc}"
            row["metadata"] = version.metadata or {}
            rows.append(row)
    except StoreError as exc:
        print(f"{PROG} list: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"location": config.location, "versions": rows}, indent=1))
        return 0
    print(f"{config.location}: {len(versions)} version(s), newest first")
    for row in rows:
        meta = row["metadata"]
        print(f"{row['version']}{' (latest)' if row['latest'] else ''}  saved {meta.get('saved-at', '?')}  "
              f"{row['size']} bytes  mosquitto {meta.get('broker-version', '?')}  {row['status']}"
              + (f"  [{meta['contents']}]" if meta.get("contents") else ""))
    return 0


def main(argv: Optional[list[str]] = None, env: Optional[Mapping[str, str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config(args, env)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "init":
        from . import restore  # noqa: PLC0415

        return restore.run(config).exit_code
    if args.command == "list":
        return _list(config, args)
    from . import agent  # noqa: PLC0415

    if args.once:
        worker = agent.Agent(config)
        return 0 if worker.cycle() is not None else 1
    return agent.run(config)


if __name__ == "__main__":
    sys.exit(main())
