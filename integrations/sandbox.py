"""A simulated two-region estate for demos, training and game days.

Lag drifts smoothly around each service's baseline; regions are healthy unless a fault is
injected. The estate lives in the process (one per sandbox source) and reacts to faults
injected from the shell or tests. Every reply built from it says SANDBOX.
"""
from __future__ import annotations

import math
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel, ConfigDict, Field

from integrations.base import (
    BACKUP, DATABASE, HEALTH, LAG, TRAFFIC, WEIGHTS, ActionResult, Backend, BackendOptions, BackupPoint, CheckResult,
    DbRole, ErrorKind, HealthReading, IntegrationError, LagReading, LagSample, RegionDb, Replication, Target, utcnow,
)
from integrations.sandbox_steps import SandboxSteps, StepWorld
from integrations.steps import HTTP_CALL, KUBERNETES

FAULTS = ("region_down", "replication_stopped", "lag_spike", "source_error", "source_hang", "action_fails",
          "replica_detached", "http_fails", "backup_stale")
"""``replica_detached``: the region's database (every non-writer one when no region is
named) is a standalone former writer, not a replica: moving to it loses data. ``http_fails``:
http steps whose URL names the service (and the region, when one is named) get HTTP 500
(integrations/sandbox_steps.py). ``backup_stale`` (given a backup's target as the service): its
newest backup is 3 days older."""


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lag: float = Field(default=20.0, ge=0, description="baseline replication lag, seconds")
    jitter: float = Field(default=10.0, ge=0, description="how far lag drifts around the baseline, seconds")
    period: float = Field(default=900.0, gt=0, description="seconds per drift cycle")


class SandboxOptions(BackendOptions):
    profiles: dict[str, Profile] = {}
    """Per service, or per replication stream as ``SERVICE/TARGET`` (the stream's ``target``,
    in its unit: messages, objects...); without one, the service's profile or the defaults."""
    delay: float = Field(default=0.0, ge=0)
    """Seconds each read takes, to rehearse slow sources."""
    action_delay: float = Field(default=0.0, ge=0)
    """Seconds each change (traffic shift, promotion) takes."""
    backup_every: float = Field(default=21600.0, gt=0)
    """Seconds between simulated backups: the newest was taken at the last multiple of this
    (the fault ``backup_stale`` on a backup's target makes it 3 days older)."""


@dataclass
class _ServiceState:
    faults: dict[str, str | None] = field(default_factory=dict)  # fault -> region or None
    active: str | None = None
    writer: str | None = None
    regions: list[str] = field(default_factory=list)
    detached: set[str] = field(default_factory=set)
    """Former writers left standalone by a promotion (they replicate from nothing)."""
    levels: dict[str, float] = field(default_factory=dict)
    """Pinned lag per stream target ("" for the service's own): ``Estate.set_lag``."""
    weights: dict[str, float] = field(default_factory=dict)
    """A staged ramp's split (region -> %); empty: all traffic to ``active``."""


class Estate:
    """Mutable simulated state, shared by every service the sandbox source serves."""

    def __init__(self, clock=time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self._services: dict[str, _ServiceState] = {}
        self.world = StepWorld()
        """What the simulated http and kubernetes steps changed."""

    def _state(self, service: str) -> _ServiceState:
        return self._services.setdefault(service, _ServiceState())

    def inject(self, service: str, fault: str, region: str | None = None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
        with self._lock:
            self._state(service).faults[fault] = region

    def clear(self, service: str, fault: str | None = None) -> None:
        """Clear one fault, or all; clearing ``replica_detached`` (or all) also re-creates
        the replicas a promotion left detached."""
        with self._lock:
            st = self._state(service)
            st.faults.clear() if fault is None else st.faults.pop(fault, None)
            if fault in (None, "replica_detached"):
                st.detached.clear()

    def seed(self, service: str, active: str, standby: str | None = None) -> None:
        """Where the service runs now (the caller's record); kept if already known."""
        with self._lock:
            st = self._state(service)
            st.active = st.active or active
            st.writer = st.writer or active
            for region in (active, standby):
                if region and region not in st.regions:
                    st.regions.append(region)

    def rejoin(self, service: str, region: str) -> None:
        """Re-create ``region``'s database as a replica of the writer (after a promotion)."""
        with self._lock:
            self._state(service).detached.discard(region)

    def replication(self, service: str) -> tuple[str | None, list[str], set[str]]:
        """(writer, known regions, detached regions), faults included."""
        with self._lock:
            st = self._state(service)
            detached = set(st.detached)
            if "replica_detached" in st.faults:
                region = st.faults["replica_detached"]
                detached |= {region} if region else {r for r in st.regions if r != st.writer}
            return st.writer, list(st.regions), detached - {st.writer}

    def active(self, service: str) -> str | None:
        with self._lock:
            return self._state(service).active

    def writer(self, service: str) -> str | None:
        with self._lock:
            return self._state(service).writer

    def move(self, service: str, traffic: str | None = None, writer: str | None = None,
             detach: bool = False) -> None:
        """``detach``: the old writer is left standalone (a replica promotion), not
        turned into a replica of the new one (a switchover or failover)."""
        with self._lock:
            st = self._state(service)
            for region in (traffic, writer):
                if region and region not in st.regions:
                    st.regions.append(region)
            st.active = traffic or st.active
            if traffic:
                st.weights = {}
            if writer and writer != st.writer:
                if detach and st.writer:
                    st.detached.add(st.writer)
                st.detached.discard(writer)
                st.writer = writer

    def weights(self, service: str) -> dict[str, float]:
        """region -> % of the traffic: a ramp's split, or 100 to the active region."""
        with self._lock:
            st = self._state(service)
            return dict(st.weights) or {r: 100.0 if r == st.active else 0.0 for r in st.regions}

    def set_weights(self, service: str, weights: dict[str, float]) -> None:
        """A staged ramp's split; the active region is the one with the largest share."""
        with self._lock:
            st = self._state(service)
            st.regions += [r for r in weights if r not in st.regions]
            st.weights = {r: float(weights.get(r, 0.0)) for r in st.regions}
            top = max(st.weights.values())
            if st.weights.get(st.active or "", -1.0) < top:
                st.active = next(r for r, w in st.weights.items() if w == top)

    def services(self) -> list[str]:
        with self._lock:
            return list(self._services)

    def faults(self, service: str) -> dict[str, str | None]:
        with self._lock:
            return dict(self._state(service).faults)

    def set_lag(self, service: str, value: float | None, target: str | None = None) -> None:
        """Pin the lag of ``service`` (of its stream ``target``, in that stream's unit) at
        ``value``; None lets it drift around its profile again."""
        with self._lock:
            levels = self._state(service).levels
            levels.pop(target or "", None) if value is None else levels.__setitem__(target or "", float(value))

    def pinned_lag(self, service: str, target: str | None = None) -> float | None:
        with self._lock:
            return self._state(service).levels.get(target or "")

    def now(self) -> float:
        return self._clock()


class SandboxBackend(SandboxSteps, Backend):
    kind = "sandbox"
    title = "SANDBOX"
    Options = SandboxOptions
    capabilities = frozenset({LAG, HEALTH, TRAFFIC, WEIGHTS, DATABASE, BACKUP, HTTP_CALL, KUBERNETES})
    sandbox = True

    options: SandboxOptions

    @property
    def estate(self) -> Estate:
        if self._client is None:
            self._client = Estate()
        return self._client

    def check(self) -> CheckResult:
        return CheckResult(True, "SANDBOX estate (simulated, nothing real is read or changed)")

    def _before_read(self, service: str) -> dict[str, str | None]:
        faults = self.estate.faults(service)
        if "source_hang" in faults:
            time.sleep(self.options.timeout * 10)
        if self.options.delay:
            time.sleep(self.options.delay)
        if "source_error" in faults:
            raise IntegrationError(f"SANDBOX: injected source error for {service}", ErrorKind.TRANSIENT)
        return faults

    def _lag_at(self, service: str, t: float, faults: dict, stream: str | None = None) -> float:
        pinned = self.estate.pinned_lag(service, stream)
        if pinned is not None:
            return pinned
        profiles = self.options.profiles
        p = profiles.get(f"{service}/{stream}") or profiles.get(service) or Profile()
        phase = (zlib.crc32(f"{service}/{stream or ''}".encode() if stream else service.encode()) % 1000) \
            / 1000 * 2 * math.pi
        lag = p.lag + p.jitter * math.sin(2 * math.pi * t / p.period + phase)
        if "lag_spike" in faults:
            lag += max(p.lag, 60.0) * 10
        return round(max(lag, 0.0), 1)

    def read_lag(self, target: Target, history: bool = False) -> LagReading:
        faults = self._before_read(target.service)
        now = self.estate.now()
        observed = utcnow()
        unit = target.unit
        if "replication_stopped" in faults:
            return LagReading(None, observed, replicating=False, detail="SANDBOX: replication stopped (injected)",
                              unit=unit)
        writer, _, detached = self.estate.replication(target.service)
        if detached:
            return LagReading(None, observed, replicating=False, unit=unit,
                              detail=f"SANDBOX: {', '.join(sorted(detached))} not replicating from {writer} (detached)")
        samples: tuple[LagSample, ...] = ()
        stream = target.query
        if history:
            samples = tuple(
                LagSample(observed - timedelta(seconds=60 * k),
                          self._lag_at(target.service, now - 60 * k, faults, stream))
                for k in range(30, -1, -1)
            )
        return LagReading(self._lag_at(target.service, now, faults, stream), observed, history=samples,
                          detail="SANDBOX" if stream is None else f"SANDBOX: {stream}", unit=unit)

    def check_health(self, target: Target) -> HealthReading:
        faults = self._before_read(target.service)
        down = "region_down" in faults and faults["region_down"] in (None, target.region)
        detail = f"SANDBOX: {target.region} " + ("down (injected fault)" if down else "serving")
        return HealthReading(not down, utcnow(), detail=detail, latency_ms=None if down else 12.0)

    @classmethod
    def check_target(cls, target: str) -> str | None:
        return None if target.strip() else "name what is backed up (any name: the sandbox backs it up)"

    def newest_backup(self, target: str) -> BackupPoint:
        faults = self._before_read(target)
        taken = self.estate.now() // self.options.backup_every * self.options.backup_every
        if "backup_stale" in faults:
            taken -= 3 * 86400
        at = datetime.fromtimestamp(taken, timezone.utc)
        return BackupPoint(f"sandbox-{target}-{at:%Y%m%d%H%M}", at, detail="SANDBOX: simulated backup")

    # -- changes: the estate reacts --------------------------------------------------------
    def _known(self, value: str | None, service: str, what: str) -> str:
        if value is None:
            raise IntegrationError(f"SANDBOX: {what} of {service} is not known (not seeded)", ErrorKind.PERMANENT)
        return value

    def _act(self, service: str) -> None:
        if self.options.action_delay:
            time.sleep(self.options.action_delay)
        if "action_fails" in self.estate.faults(service):
            raise IntegrationError(f"SANDBOX: injected action failure for {service}", ErrorKind.TRANSIENT)

    def active_region(self, target: Target) -> str:
        return self._known(self.estate.active(target.service), target.service, "the active region")

    def writer_region(self, target: Target) -> str:
        return self._known(self.estate.writer(target.service), target.service, "the writer region")

    def replication(self, target: Target) -> Replication:
        self._before_read(target.service)
        writer, regions, detached = self.estate.replication(target.service)
        writer = self._known(writer, target.service, "the writer region")
        out = []
        for region in regions:
            if region == writer:
                out.append(RegionDb(region, DbRole.WRITER, detail=f"SANDBOX: {region} writes"))
            elif region in detached:
                out.append(RegionDb(region, DbRole.WRITER,
                                    detail=f"SANDBOX: {region} is a standalone former writer (detached)"))
            else:
                out.append(RegionDb(region, DbRole.REPLICA, writer, detail=f"SANDBOX: {region} replicates from {writer}"))
        return Replication(tuple(out), utcnow())

    def shift(self, target: Target, to_region: str, dry_run: bool = False) -> ActionResult:
        before = self.active_region(target)
        if before == to_region and self.estate.weights(target.service).get(to_region) == 100:
            return ActionResult(f"SANDBOX: traffic of {target.service} already goes to {to_region}", dry_run, False)
        if dry_run:
            return ActionResult(f"SANDBOX: would shift traffic of {target.service} from {before} to {to_region}",
                                True, False, {"from": before, "to": to_region})
        self._act(target.service)
        self.estate.move(target.service, traffic=to_region)
        return ActionResult(f"SANDBOX: shifted traffic of {target.service} from {before} to {to_region}",
                            False, True, {"from": before, "to": to_region})

    def weights(self, target: Target) -> dict[str, float]:
        self._before_read(target.service)
        self._known(self.estate.active(target.service), target.service, "the active region")
        return self.estate.weights(target.service)

    def set_weights(self, target: Target, weights: dict[str, float], dry_run: bool = False) -> ActionResult:
        before = self.weights(target)
        after = {r: float(weights.get(r, 0.0)) for r in before | weights}
        split = ", ".join(f"{r}={w:g}%" for r, w in after.items())
        details = {"before": before, "after": after}
        if before == after:
            return ActionResult(f"SANDBOX: traffic of {target.service} already {split}", dry_run, False, details)
        if dry_run:
            return ActionResult(f"SANDBOX: would split traffic of {target.service} {split}", True, False, details)
        self._act(target.service)
        self.estate.set_weights(target.service, after)
        return ActionResult(f"SANDBOX: split traffic of {target.service} {split}", False, True, details)

    def promote(self, target: Target, to_region: str, mode: str = "promote", allow_data_loss: bool = False,
                dry_run: bool = False) -> ActionResult:
        if mode == "failover" and not allow_data_loss:
            raise IntegrationError("SANDBOX: failover can lose data and allow_data_loss is not set",
                                   ErrorKind.PERMANENT)
        before = self.writer_region(target)
        if before == to_region:
            return ActionResult(f"SANDBOX: {to_region} already writes for {target.service}", dry_run, False)
        verb = {"promote": "promote", "switchover": "switch over", "failover": "fail over"}.get(mode, mode)
        if dry_run:
            return ActionResult(f"SANDBOX: would {verb} the {target.service} database to {to_region} "
                                f"(writer now {before})", True, False, {"from": before, "to": to_region, "mode": mode})
        self._act(target.service)
        self.estate.move(target.service, writer=to_region, detach=mode == "promote")
        return ActionResult(f"SANDBOX: {verb} of the {target.service} database to {to_region} done",
                            False, True, {"from": before, "to": to_region, "mode": mode})
