"""``drbot``: run the bot, open the local shell, print a readiness report, check a config."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bot import oplog, wiring
from bot.alerts.drain import failed_payloads, retry_failed
from bot.check import check_config
from bot.config import ConfigError, load_config
from bot.evidence import export
from bot.evidence import verify as verify_evidence
from bot.followups import recover_interrupted
from bot.render import Reply
from bot.store import make_engine
from bot.store.schema import SchemaBehind, current, head, pending, upgrade
from bot.report_json import report_to_dict
from commands.router import click, dispatch
from transports.serve import pick_mode, run
from transports.shell import Shell

EXIT_OK, EXIT_NOT_READY, EXIT_BAD_CONFIG = 0, 1, 2
log = logging.getLogger("drbot")


def _env_port(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SystemExit(f"drbot: {name}={value!r} is not a port number (1-65535)")
    return int(value)


def unreachable_database(url: str, error: OperationalError) -> str:
    """One paragraph for a database that refused or did not answer at start, password hidden."""
    why = " ".join(str(error.orig or error).split())[:300]
    return (f"cannot use the database at {make_url(url).render_as_string(hide_password=True)} ({why}). Check "
            "DATABASE_URL (postgresql+psycopg://USER:PASSWORD@HOST:5432/DB), that the database is up and "
            "reachable from this host, then start drbot again.")


def drbot_version() -> str:
    """The installed package's version (pyproject.toml), or "unknown" when run from a bare tree."""
    try:
        return version("drbot")
    except PackageNotFoundError:  # pragma: no cover - sources on sys.path without an install
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="drbot", description="Slack ChatOps bot for multi-region disaster recovery.")
    p.add_argument("--version", action="version", version=f"drbot {drbot_version()}")
    p.add_argument("--log-level", default=os.environ.get("DRBOT_LOG_LEVEL"),
                   help="default: $DRBOT_LOG_LEVEL, else INFO for `run` and WARNING for other commands")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def with_config(sp):
        sp.add_argument("--config", help="config file (default: $DRBOT_CONFIG or ./drbot.yaml)")
        return sp

    run = with_config(sub.add_parser("run", help="connect to Slack (Socket Mode or HTTP)"))
    run.add_argument("--mode", choices=["socket", "http"],
                     help="default: socket when SLACK_APP_TOKEN is set, else http when SLACK_SIGNING_SECRET is set")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=3000,
                     help="HTTP port: Slack events (HTTP mode), alert webhooks, /healthz, /readyz, /metrics")
    run.add_argument("--metrics-port", type=int, default=_env_port("DRBOT_METRICS_PORT"),
                     help="serve /metrics on this port only, not on --port (default: $DRBOT_METRICS_PORT; "
                          "unset: on --port)")
    run.add_argument("--migrate", action="store_true",
                     help="upgrade an older database schema first (replicas upgrading at once take turns)")

    shell = with_config(sub.add_parser("shell", help="the local console: same commands, text replies"))
    shell.add_argument("--as", dest="user", default="alice", help="who you are at first (default alice)")

    status = with_config(sub.add_parser("status", help="one readiness report; exit 0 when every service is READY"))
    status.add_argument("service", nargs="?")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    with_config(sub.add_parser("check-config", help="validate the config and check every source; exit 0 or 2"))

    db = sub.add_parser("db", help="the database schema: `db current` shows its revision, `db upgrade` upgrades it")
    db.add_argument("action", choices=["current", "upgrade"])

    alerts = with_config(sub.add_parser(
        "alerts", help="stored alert notifications given up on: `alerts` lists them, `alerts retry ID...|--all` "
                       "tries them again"))
    alerts.add_argument("action", nargs="?", choices=["list", "retry"], default="list")
    alerts.add_argument("ids", nargs="*", type=int, metavar="ID")
    alerts.add_argument("--all", action="store_true", help="with retry: every notification given up on")

    evidence = with_config(sub.add_parser("evidence", help="write the audit pack of drills, failovers and rollbacks"))
    evidence.add_argument("--since", help="runs started at or after this ISO date/datetime, UTC (default: 90 days ago)")
    evidence.add_argument("--until", help="runs started before this ISO date/datetime, UTC; a date includes that day")
    evidence.add_argument("--out", help="directory to write (default: ./evidence-YYYYMMDD)")
    evidence.add_argument("--service", help="only this service")
    evidence.add_argument("--force", action="store_true", help="replace a non-empty --out directory")
    evidence.add_argument("--unsigned", action="store_true",
                          help="write the pack without a signature (default: sign with $DRBOT_EVIDENCE_KEY)")
    evidence_sub = evidence.add_subparsers(dest="evidence_cmd", metavar="verify")
    check = evidence_sub.add_parser("verify", help="check a pack's hashes and signature; exit 0, 1 if changed")
    check.add_argument("dir", help="the pack's directory")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:  # third-party loggers at WARNING; DRBOT_LOG_FORMAT=json: one JSON object per line
        oplog.setup(args.log_level or ("INFO" if args.cmd == "run" else "WARNING"),
                    os.environ.get("DRBOT_LOG_FORMAT", "text"), os.environ.get("DRBOT_LOG_LEVEL_LIBS", "WARNING"),
                    sys.stderr)
    except ValueError as e:
        print(f"drbot: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.cmd == "db":
        try:
            return _db(args.action)
        except OperationalError as e:
            print(f"drbot: {unreachable_database(wiring.database_url(), e)}", file=sys.stderr)
            return EXIT_BAD_CONFIG
    if args.cmd == "evidence" and args.evidence_cmd == "verify":
        return verify_evidence(args.dir)  # no config, no database: an auditor needs only the pack and the key
    path = wiring.config_path(args.config)
    try:
        loaded = load_config(path)
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.cmd == "check-config":
        return check_config(loaded, wiring.build_backends(loaded), sys.stdout)
    for note in loaded.notes:
        log.warning("config note: %s%s: %s: %s", path, f":{note.line}" if note.line else "", note.path, note.message)
    try:
        services = wiring.build_services(loaded, inline_runs=args.cmd == "shell",
                                         migrate=args.cmd == "run" and args.migrate)
    except OperationalError as e:
        print(f"drbot: {unreachable_database(wiring.database_url(), e)}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except SchemaBehind as e:
        print(f"drbot: the database schema is older than this drbot (missing revisions: {e}). Upgrade it with "
              "`drbot db upgrade` (DATABASE_URL as for drbot run), or start with `drbot run --migrate`.",
              file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.cmd == "status":
        return _status(services, args.service, args.json)
    if args.cmd == "evidence":
        return export(services, args)
    if args.cmd == "alerts":
        return _alerts(services, args)
    if args.cmd == "shell":
        shell = Shell(services, dispatch, user=args.user, click=click)
        recover_interrupted(services)
        return shell.loop()
    log.info("drbot %s starting: config %s, mode %s, store %s", drbot_version(), os.path.abspath(path),
             pick_mode(args.mode) or "unset", services.engine.dialect.name,
             extra={"op": "start", "keys": {"version": drbot_version(), "config": os.path.abspath(path),
                                            "mode": pick_mode(args.mode), "store": services.engine.dialect.name}})
    return run(services, mode=args.mode, host=args.host, port=args.port, metrics_port=args.metrics_port)


def _db(action: str) -> int:
    engine = make_engine(wiring.database_url())
    try:
        if action == "upgrade":
            before = current(engine)
            upgrade(engine)
            print(f"database at revision {current(engine)} (was {before or 'new or unversioned'})")
        else:
            missing = pending(engine)
            print(f"database at revision {current(engine) or 'none'}; newest {head()}"
                  + (f"; missing: {', '.join(missing)}" if missing else "; up to date"))
    finally:
        engine.dispose()
    return EXIT_OK


def _alerts(services, args) -> int:
    if args.action == "list":
        failed, waiting = failed_payloads(services), services.inbox.waiting()
        print(f"{waiting['pending']} notification(s) waiting to be processed; {waiting['failed']} given up on"
              + (":" if failed else "."))
        for row in failed:
            print(f"  {row.id}  {row.endpoint}  received {row.received_at:%Y-%m-%d %H:%M:%S} UTC  {row.alerts} alert(s)"
                  f"  {row.attempts} attempt(s): {row.error[:200]}")
        return EXIT_OK
    if bool(args.ids) == args.all:
        print("drbot: alerts retry needs the IDs of notifications given up on (see `drbot alerts`), or --all",
              file=sys.stderr)
        return EXIT_BAD_CONFIG
    moved = retry_failed(services, None if args.all else args.ids)
    left = sorted(set(args.ids) - set(moved))
    if moved:
        print(f"waiting again for the drain: {', '.join(map(str, moved))}")
    if left:
        print(f"drbot: not given up on (unknown, waiting or processed already): {', '.join(map(str, left))}",
              file=sys.stderr)
        return EXIT_BAD_CONFIG
    if not moved:
        print("nothing was given up on: nothing to retry")
    return EXIT_OK


def _status(services, service: str | None, as_json: bool) -> int:
    if service and services.config.service(service) is None:
        print(f"drbot: no service named {service!r} (services: {', '.join(services.config.service_names)})",
              file=sys.stderr)
        return EXIT_BAD_CONFIG
    report = services.status.report(service, history=service is not None)
    try:
        if as_json:
            print(json.dumps(report_to_dict(report, services.renderer), indent=2))
        else:
            template = "status_detail" if service else "status_summary"
            sys.stdout.write(services.renderer.text(Reply(template, {"report": report, "command": services.command})))
        sys.stdout.flush()
    except BrokenPipeError:  # `drbot status --json | head`: the reader left; the rest goes nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK if report.all_ready else EXIT_NOT_READY


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
