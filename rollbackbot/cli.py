"""Command line (docs/cli.md): serve | demo | policy check|schema | plan | readiness | rollback | incidents | db."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from rollbackbot.errors import RollbackBotError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollbackbot", description="GitOps circuit breaker for ML models")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the webhook service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--log-format", choices=["json", "text"], default="json")

    demo = sub.add_parser("demo", help="the whole loop on an embedded sandbox")
    demo.add_argument("--workdir", type=Path, default=None, help="keep the sandbox here (default: a temp dir)")
    demo.add_argument("--serve", action="store_true", help="keep serving the incident pages until interrupted")

    policy = sub.add_parser("policy", help="policy files")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate a directory of policies (exit 1 on errors)")
    check.add_argument("directory", nargs="?", type=Path, default=None)
    policy_sub.add_parser("schema", help="print the JSON Schema of a policy file")

    plan = sub.add_parser("plan", help="dry run: what a rollback of APP would do")
    plan.add_argument("--app", required=True)

    readiness = sub.add_parser(
        "readiness", help="can every guarded app be rolled back now? (exit 1 when one cannot; for release CI)"
    )
    readiness.add_argument("--app", default=None, help="only this app")
    readiness.add_argument("--json", action="store_true", help="print the report as JSON")

    rollback = sub.add_parser("rollback", help="roll APP back now (same path and records as automatic)")
    rollback.add_argument("--app", required=True)
    rollback.add_argument("--to", dest="to_tag", default=None, help="a specific verified release tag")

    incidents = sub.add_parser("incidents", help="list incidents, or show one")
    incidents.add_argument("incident_id", nargs="?")
    incidents.add_argument("--json", action="store_true")
    incidents.add_argument(
        "--url",
        default=os.environ.get("ROLLBACKBOT_API_URL"),
        help="ask the running service's /api (token from ROLLBACKBOT_API_TOKEN or ROLLBACKBOT_WEBHOOK_TOKEN) "
        "instead of reading ROLLBACKBOT_DATABASE_URL; default $ROLLBACKBOT_API_URL",
    )
    db = sub.add_parser("db", help="the incident store's schema (reads only ROLLBACKBOT_DATABASE_URL)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate the schema to this version's newest revision (also done at start)")
    db_sub.add_parser("current", help="print the schema revision of the database and this version's newest")
    sub.add_parser("observer", help="the model observer sidecar: serve | scan | baseline", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["observer"]:  # its own command tree: rollbackbot/observer/cli.py
        from rollbackbot.observer.cli import main as observer_main

        return observer_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except RollbackBotError as exc:
        print(f"rollbackbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `rollbackbot policy schema | head`
        sys.stderr.close()
        return 0


def _run(args: argparse.Namespace) -> int:
    from rollbackbot import commands

    if args.command == "serve":
        return commands.serve(args.host, args.port, args.log_format)
    if args.command == "demo":
        from rollbackbot.demo import run_demo

        return asyncio.run(run_demo(args.workdir, serve=args.serve))
    if args.command == "policy":
        if args.policy_command == "schema":
            from rollbackbot.core.policy import policy_json_schema

            print(json.dumps(policy_json_schema(), indent=2))
            return 0
        directory = args.directory or Path(os.environ.get("ROLLBACKBOT_POLICIES", "policies"))
        return commands.policy_check(directory)
    if args.command == "plan":
        return commands.plan(args.app)
    if args.command == "readiness":
        return asyncio.run(commands.readiness(args.app, args.json))
    if args.command == "rollback":
        return asyncio.run(commands.rollback(args.app, args.to_tag))
    if args.command == "incidents":
        return commands.incidents(args.incident_id, args.json, args.url)
    if args.command == "db":
        return commands.db(args.db_command)
    raise AssertionError(args.command)
