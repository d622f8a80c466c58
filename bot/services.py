"""Everything a command needs, built once by ``bot.wiring`` and passed in. No globals."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from sqlalchemy.engine import Engine

from bot.collector import Collector
from bot.config import Config, LoadedConfig
from bot.directory import Directory
from bot.messenger import Messenger, RecordingMessenger
from bot.metrics import Metrics
from bot.render import Renderer
from bot.status import StatusService
from integrations.base import Backend


@dataclass
class Services:
    loaded: LoadedConfig
    engine: Engine
    backends: dict[str, Backend]
    collector: Collector
    status: StatusService
    renderer: Renderer
    clock: Callable[[], datetime]
    messenger: Messenger = field(default_factory=RecordingMessenger)
    directory: Directory = field(default_factory=Directory)
    runner: Any = None
    """bot.engine.Runner, set by bot.wiring (it needs these services)."""
    outbox: Any = None
    """bot.outbox.Worker, set by bot.wiring."""
    inbox: Any = None
    """bot.alerts.drain.Drain (accepted alert payloads, processed in batches), set by bot.wiring."""
    scheduler: Any = None
    """bot.scheduler.Scheduler (started by ``drbot run`` only), set by bot.wiring."""
    metrics: Metrics = field(default_factory=Metrics)
    """Counters and histograms (bot.metrics), served at /metrics; one registry per Services."""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def command(self) -> str:
        return self.config.slack.command
