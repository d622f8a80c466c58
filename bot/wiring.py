"""The one place where things are built: config, database, backends, services.
Called from the CLI and from tests; nothing is built at import time."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Callable

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot import drills, incident_followups, jobs
from bot.changes import expire_due
from bot.alerts.drain import Drain
from bot.collector import Collector
from bot.config import LoadedConfig, load_config
from bot.delivery import registry
from bot.digest import digest_once
from bot.engine import Runner
from bot.metrics import Metrics
from bot.incident_command import call_out_missing_commanders
from bot.incidents import remind_due
from bot import no_change
from bot.outbox.worker import Worker
from bot.scheduler import Scheduler
from bot.render import Renderer
from bot.services import Services
from bot.status import StatusService
from bot.store import DEFAULT_URL, make_engine
from bot.store.schema import prepare
from bot.watch import watch_once
from integrations import registry as backend_registry
from integrations.base import Backend


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def config_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get("DRBOT_CONFIG") or "drbot.yaml"


def database_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("DATABASE_URL") or DEFAULT_URL


def build_backends(loaded: LoadedConfig, clients: dict[str, Any] | None = None) -> dict[str, Backend]:
    """One backend per named source; ``clients`` injects a client by source name (tests)."""
    clients = clients or {}
    out = {}
    for name, spec in loaded.config.sources.items():
        cls = backend_registry.backend_class(spec.kind)
        out[name] = cls(name, loaded.options[name], client=clients.get(name))
    return out


def build_services(config: str | LoadedConfig | None = None, db_url: str | None = None,
                   clients: dict[str, Any] | None = None,
                   clock: Callable[[], datetime] = utcnow, inline_runs: bool = False,
                   migrate: bool = True) -> Services:
    """``migrate`` False: refuse (SchemaBehind) a database older than this code, rather than
    upgrading it (``drbot`` commands other than ``db upgrade`` and ``run --migrate``)."""
    loaded = config if isinstance(config, LoadedConfig) else load_config(config_path(config))
    engine = make_engine(database_url(db_url))
    prepare(engine, migrate)
    backends = build_backends(loaded, clients)
    collector = Collector(backends)
    collector.prepare()  # HTTP clients and reader threads now, not during the first report
    services = Services(
        loaded=loaded,
        engine=engine,
        backends=backends,
        collector=collector,
        status=StatusService(loaded, collector, engine, clock),
        renderer=Renderer(loaded.config.timezone),
        clock=clock,
        metrics=Metrics(),
    )
    services.metrics.watch(services)  # outbox depth, verdicts, leadership: read at each scrape
    services.runner = Runner(services, inline=inline_runs)
    services.outbox = Worker(services, registry.kinds(loaded.config), registry.limits(loaded.config),
                             inline=inline_runs)
    services.inbox = Drain(services, inline=inline_runs)
    services.scheduler = build_scheduler(services)
    seed_sandboxes(services)
    return services


def build_scheduler(services: Services) -> Scheduler:
    """The periodic jobs of a deployment; they run on the leader only, once it starts."""
    jobs.register("expire_due", lambda: expire_due(services))
    jobs.register("drill_tick", lambda: drills.tick(services))
    cfg = services.config.scheduler
    scheduler = Scheduler(services, poll_interval=cfg.leader_poll.total_seconds(),
                          misfire_grace=cfg.misfire_grace.total_seconds())
    scheduler.add_job("expire_due", IntervalTrigger(seconds=15))
    watch, digest = services.config.watch, services.config.digest
    if watch.enabled:
        jobs.register("readiness_watch", lambda: watch_once(services))
        scheduler.add_job("readiness_watch", IntervalTrigger(seconds=watch.interval.total_seconds()))
    if digest.enabled:
        jobs.register("weekly_digest", lambda: digest_once(services))
        scheduler.add_job("weekly_digest", CronTrigger.from_crontab(digest.cron, timezone=digest.timezone))
    scheduler.add_job("drill_tick", IntervalTrigger(seconds=cfg.drill_tick.total_seconds()))
    jobs.register("incident_reminders", lambda: (remind_due(services), call_out_missing_commanders(services),
                                                 incident_followups.remind(services), no_change.post_due(services)))
    scheduler.add_job("incident_reminders", IntervalTrigger(seconds=60))
    return scheduler


def seed_sandboxes(services: Services) -> None:
    """Tell each sandbox estate where drbot's record says every service runs now."""
    regions = services.status.regions()
    for svc in services.config.services:
        names = {c.source for c in (svc.traffic, svc.database) if c is not None}
        for name in names:
            backend = services.backends.get(name)
            if backend is not None and backend.sandbox:
                backend.estate.seed(svc.name, *regions[svc.name])
