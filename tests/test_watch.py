"""The readiness watch: posts once per change of the announced verdict, never flaps on lag
hovering at a threshold, records lag for the digest, and posts through the outbox.

Lag and health come from a scripted source (a stand-in for a lag/health backend, set in
``services.backends``) whose readings carry the test's clock; a passed drill is on record
so that the drill part does not hide the lag transitions (no drill: every service AT_RISK).
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlmodel import col, select

from bot import jobs
from bot.config import parse_config
from bot.messenger import RecordingMessenger
from bot.outbox.worker import Worker
from bot.delivery.registry import kinds, limits
from bot.events import ReadinessChange
from bot.outbox.queue import enqueue, parse
from bot.readiness import DrillInfo, Targets, Verdict, assess
from bot.readings import Reading, Status
from bot.store import session_scope
from bot.store.drill_tables import LagRecord, WatchState
from bot.store.incident_tables import OutboxItem, OutboxState
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run
from bot.watch import lag_band, watch_once, watched_verdict
from bot.wiring import build_services
from integrations.base import ErrorKind, HealthReading, IntegrationError, LagReading

ANNOUNCE = "C0ANNOUNCE"

BASE = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 2.0}
services:
  - name: orders
    tier: critical
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim, warning: 120s, critical: 240s}
    health: {us-east-1: sim, us-west-2: sim}
"""
WITH_CHANNEL = BASE + f"""
slack:
  channels: {{announcements: {ANNOUNCE}}}
watch: {{hysteresis: 0.1}}
"""


class ScriptedSource:
    """A lag and health source whose readings the test sets; observed at the test's clock."""

    sandbox = False

    def __init__(self, clock):
        self.clock = clock
        self.options = SimpleNamespace(timeout=2.0)
        self.lag: dict[str, float | None] = {}
        self.down: set[tuple[str, str]] = set()
        self.error: str | None = None
        self.age = timedelta(0)

    def read_lag(self, target, history: bool = False) -> LagReading:
        if self.error:
            raise IntegrationError(self.error, ErrorKind.TRANSIENT)
        seconds = self.lag.get(target.service, 20.0)
        if seconds is None:
            return LagReading(None, self.clock() - self.age, replicating=False, detail="stopped")
        return LagReading(seconds, self.clock() - self.age)

    def check_health(self, target) -> HealthReading:
        return HealthReading((target.service, target.region) not in self.down, self.clock())


class World:
    """Services on a controllable clock with a scripted source; ``tick`` advances a minute
    and runs one watch pass."""

    def __init__(self, text: str, db_url: str, drill: bool = True):
        self.now = [datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=5)]
        self.services = build_services(parse_config(text, "watch-test.yaml", {}), db_url=db_url,
                                       clock=lambda: self.now[0])
        self.source = ScriptedSource(lambda: self.now[0])
        self.services.backends["sim"] = self.source
        self.services.collector.backends["sim"] = self.source
        self.messenger = RecordingMessenger()
        self.services.messenger = self.messenger
        # the real kinds and Slack pacing; a paced item makes drain() wait (bounded by its timeout)
        self.services.outbox = Worker(self.services, kinds(self.services.config), limits(self.services.config),
                                      sleep=time.sleep)
        if drill:
            for name in self.services.config.service_names:
                passed_drill(self.services, name, self.now[0] - timedelta(days=1))

    def tick(self, lag: float | None = None, service: str = "orders") -> list[dict]:
        self.now[0] += timedelta(minutes=1)
        if lag is not None:
            self.source.lag[service] = lag
        return watch_once(self.services)

    def items(self) -> list[OutboxItem]:
        with session_scope(self.services.engine) as s:
            return list(s.exec(select(OutboxItem).where(OutboxItem.kind == ReadinessChange.KIND)
                               .order_by(col(OutboxItem.id))))

    def payloads(self) -> list[dict]:
        """The ``change`` of each queued ReadinessChange, after checking that the event's own
        fields (destination, service, moment, verdict) say the same as the change."""
        out = []
        for item in self.items():
            ev = parse(item)
            assert isinstance(ev, ReadinessChange)
            c = ev.change
            assert (ev.channel, ev.service, ev.at, ev.to) == (c["channel"], c["service"], c["at"], c["to"])
            assert "posted" not in c
            out.append(c)
        return out

    def state(self, service: str = "orders") -> WatchState | None:
        with session_scope(self.services.engine) as s:
            return s.get(WatchState, service)

    def posts(self) -> list:
        return [(channel, reply) for kind, channel, reply in self.messenger.log if kind == "post"]


def passed_drill(services, name: str, ended: datetime) -> None:
    with session_scope(services.engine) as s:
        cr = ChangeRequest(kind=RequestKind.DRILL, service=name, requester="UALICE", expires_at=ended,
                           state=RequestState.SUCCEEDED)
        s.add(cr)
        s.flush()
        s.add(Run(request_id=cr.id, kind=RequestKind.DRILL, service=name, state=RequestState.SUCCEEDED,
                  approved_at=ended - timedelta(minutes=10), started_at=ended - timedelta(minutes=10),
                  ended_at=ended, passed=True, measured_rto_s=300, measured_rpo_s=4))


@pytest.fixture
def world(db_url):
    w = World(WITH_CHANNEL, db_url)
    yield w
    w.services.engine.dispose()


def transitions(w: World) -> list[tuple[str, str]]:
    return [(p["from"], p["to"]) for p in w.payloads()]


# -- the pure part ---------------------------------------------------------------------------

T = Targets(rpo=timedelta(minutes=5), rto=timedelta(minutes=15), warning=timedelta(seconds=120),
            critical=timedelta(seconds=240), stale_after=timedelta(minutes=10), drill_max_age=timedelta(days=30))
NOW = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)


def assessment(lag: float | None, status: Status = Status.OK, healthy: bool = True, drill: bool = True):
    """orders with lag ``lag`` (None with status OK: replication stopped), the standby
    healthy or not, and a passed drill or none."""
    reading = Reading("lag", "sim", status, observed_at=NOW, lag_seconds=lag,
                      replicating=not (lag is None and status is Status.OK))
    health = {"east": Reading("health", "sim", Status.OK, observed_at=NOW, healthy=True),
              "west": Reading("health", "sim", Status.OK, observed_at=NOW, healthy=healthy)}
    info = DrillInfo(ended_at=NOW - timedelta(days=1), passed=True) if drill else None
    return assess("orders", "critical", "east", "west", T, reading, health, info, NOW)


@pytest.mark.parametrize("previous,lag,band", [
    ("", 119, "ok"), ("", 120, "warning"), ("", 240, "critical"),
    ("ok", 119.9, "ok"), ("ok", 120, "warning"), ("ok", 239, "warning"), ("ok", 240, "critical"),
    ("warning", 108, "warning"), ("warning", 107.9, "ok"), ("warning", 239, "warning"), ("warning", 240, "critical"),
    ("critical", 216, "critical"), ("critical", 215.9, "warning"), ("critical", 108, "warning"),
    ("critical", 107.9, "ok"),
])
def test_lag_band_enters_at_the_threshold_and_leaves_only_past_the_hysteresis(previous, lag, band):
    assert lag_band(timedelta(seconds=lag), T.warning, T.critical, previous, 0.1) == band


def test_lag_band_without_hysteresis_is_the_bare_thresholds():
    for previous in ("", "ok", "warning", "critical"):
        assert [lag_band(timedelta(seconds=s), T.warning, T.critical, previous, 0.0)
                for s in (119, 120, 239, 240)] == ["ok", "warning", "warning", "critical"]


def test_watched_verdict_holds_a_lag_verdict_inside_the_band_and_keeps_other_findings():
    assert watched_verdict(assessment(118), "warning", 0.1) == (Verdict.AT_RISK, "warning")
    assert watched_verdict(assessment(118), "ok", 0.1) == (Verdict.READY, "ok")
    assert watched_verdict(assessment(100), "warning", 0.1) == (Verdict.READY, "ok")
    assert watched_verdict(assessment(230), "critical", 0.1) == (Verdict.NOT_READY, "critical")
    # health and drill count as they are, whatever the band
    assert watched_verdict(assessment(100, healthy=False), "ok", 0.1) == (Verdict.NOT_READY, "ok")
    assert watched_verdict(assessment(100, drill=False), "ok", 0.1) == (Verdict.AT_RISK, "ok")
    assert watched_verdict(assessment(118, drill=False), "warning", 0.1) == (Verdict.AT_RISK, "warning")


def test_watched_verdict_keeps_the_band_when_lag_has_no_value():
    failed = assessment(None, status=Status.FAILED)
    assert watched_verdict(failed, "warning", 0.1) == (Verdict.UNKNOWN, "warning")
    assert watched_verdict(failed, "", 0.1) == (Verdict.UNKNOWN, "")
    stopped = assessment(None)
    assert watched_verdict(stopped, "ok", 0.1) == (Verdict.NOT_READY, "ok")


# -- the watch, end to end ---------------------------------------------------------------------

def test_first_observation_records_the_state_and_posts_nothing(world):
    assert world.tick(lag=130) == []  # AT_RISK at once: still only recorded
    st = world.state()
    assert (st.verdict, st.lag_band, st.since) == ("AT_RISK", "warning", world.now[0])
    assert world.items() == []
    world.services.outbox.drain(timeout=5)
    assert world.posts() == []


def test_lag_hovering_at_the_warning_line_posts_once_in_and_once_out(world):
    world.tick(lag=100)
    for lag in (125, 118, 124, 119, 121, 117, 109, 120, 108, 115, 111):
        world.tick(lag=lag)
    assert transitions(world) == [("READY", "AT_RISK")]
    world.tick(lag=100)
    for lag in (100, 119, 105, 119.9, 110):  # below warning, never at it: stays READY
        world.tick(lag=lag)
    assert transitions(world) == [("READY", "AT_RISK"), ("AT_RISK", "READY")]

    into, back = world.payloads()
    assert into["service"] == "orders" and into["channel"] == ANNOUNCE and into["lag_s"] == 125
    assert into["reasons"] == ["lag 2m 5s is past warning 2m (critical 4m, RPO 5m)"]
    assert into["hold"] is None and into["band"] == "warning"
    assert back["reasons"] == [] and back["band"] == "ok" and back["lag_s"] == 100
    assert world.state().verdict == "READY"

    assert world.services.outbox.drain(timeout=10)
    posts = world.posts()
    assert [c for c, _ in posts] == [ANNOUNCE, ANNOUNCE]
    blocks, text = world.services.renderer.blocks(posts[0][1])
    assert text.startswith("orders is AT RISK (was READY)")
    assert "lag 2m 5s is past warning 2m" in blocks[0]["text"]["text"]
    blocks, text = world.services.renderer.blocks(posts[1][1])
    assert text.startswith("orders is READY again (was AT RISK)")
    assert "was AT RISK for 11m" in blocks[0]["text"]["text"]
    assert "READY again" in world.services.renderer.text(posts[1][1])
    assert {i.state for i in world.items()} == {OutboxState.DELIVERED}


def test_not_ready_on_critical_and_back(world):
    world.tick(lag=20)
    world.tick(lag=250)          # READY -> NOT_READY (straight past warning)
    for lag in (230, 239, 217, 241, 216):
        world.tick(lag=lag)      # within the critical band's hysteresis
    world.tick(lag=115)          # below 216: out of critical; 115 >= 108: still in warning's band
    world.tick(lag=119)
    world.tick(lag=100)          # out of warning
    assert transitions(world) == [("READY", "NOT_READY"), ("NOT_READY", "AT_RISK"), ("AT_RISK", "READY")]
    into, down, back = world.payloads()
    assert into["reasons"] == ["lag 4m 10s is past critical 4m (RPO 5m)"]
    # lag 115 is under the warning threshold, but AT_RISK is held until it is below 108
    assert down["hold"] == {"band": "warning", "verdict": "AT_RISK", "below_s": 108.0}
    assert down["reasons"] == ["lag 1m 55s is within warning 2m (RPO 5m)"]

    assert world.services.outbox.drain(timeout=10)
    blocks, _ = world.services.renderer.blocks(world.posts()[1][1])
    assert "lag stays AT RISK until it falls below 1m 48s" in blocks[0]["text"]["text"]
    assert "until it falls below 1m 48s" in world.services.renderer.text(world.posts()[1][1])


def test_straight_from_critical_to_ok_is_one_recovery(world):
    world.tick(lag=20)
    world.tick(lag=300)
    world.tick(lag=20)
    assert transitions(world) == [("READY", "NOT_READY"), ("NOT_READY", "READY")]
    first = world.payloads()[0]
    assert first["reasons"] == ["lag 5m is past critical 4m and past the RPO of 5m: a failover now loses data"]


def test_unknown_readings_post_and_recover_keeping_the_band(world):
    world.tick(lag=20)
    world.source.error = "throttled <!channel> & co"
    world.tick()
    world.tick()                              # still unknown: no second post
    world.source.error = None
    world.tick(lag=20)                        # back to READY
    world.tick(lag=130)                       # AT_RISK
    world.source.age = timedelta(minutes=11)  # the source answers with an old value: stale
    world.tick(lag=130)
    world.source.age = timedelta(0)
    world.tick(lag=115)                       # band 'warning' survived the unknown reading: AT_RISK
    assert transitions(world) == [("READY", "UNKNOWN"), ("UNKNOWN", "READY"), ("READY", "AT_RISK"),
                                  ("AT_RISK", "UNKNOWN"), ("UNKNOWN", "AT_RISK")]
    unknown = world.payloads()[0]
    assert unknown["reasons"] == ["replication lag unknown: sim failed: throttled <!channel> & co"]
    assert unknown["lag_s"] is None
    assert world.payloads()[3]["reasons"] == ["replication lag reading is stale: 11m old, limit 10m (sim)"]
    assert world.state().lag_band == "warning"

    # text from a source is escaped in Slack: it cannot ping @channel
    assert world.services.outbox.drain(timeout=10)
    blocks, _ = world.services.renderer.blocks(world.posts()[0][1])
    assert "throttled &lt;!channel&gt; &amp; co" in blocks[0]["text"]["text"]
    assert "<!channel>" not in json.dumps(blocks)


def test_health_and_replication_changes_are_announced_too(world):
    world.tick(lag=20)
    world.source.down.add(("orders", "us-west-2"))
    world.tick()
    world.source.down.clear()
    world.tick()
    world.source.lag["orders"] = None  # replication stopped
    world.tick()
    assert transitions(world) == [("READY", "NOT_READY"), ("NOT_READY", "READY"), ("READY", "NOT_READY")]
    assert world.payloads()[0]["reasons"] == ["standby region us-west-2 is unhealthy: nowhere safe to fail over to"]
    assert world.payloads()[2]["reasons"] == ["replication is not running (sim: stopped)"]


def test_lag_band_is_kept_while_another_finding_holds_the_verdict(db_url):
    w = World(WITH_CHANNEL, db_url, drill=False)  # no drill: AT_RISK whatever the lag
    try:
        w.tick(lag=20)
        w.tick(lag=125)
        assert w.items() == [] and w.state().lag_band == "warning"
        passed_drill(w.services, "orders", w.now[0])
        w.tick(lag=118)  # the drill no longer holds it, but lag is still in warning's band
        assert w.items() == [] and w.state().verdict == "AT_RISK"
        w.tick(lag=100)
        assert transitions(w) == [("AT_RISK", "READY")]
    finally:
        w.services.engine.dispose()


def test_no_channel_configured_updates_the_state_and_posts_nothing(db_url):
    w = World(BASE, db_url)
    try:
        w.tick(lag=20)
        changes = w.tick(lag=130)
        assert [(c["from"], c["to"], c["channel"], c["posted"]) for c in changes] == [
            ("READY", "AT_RISK", None, False)]
        assert w.state().verdict == "AT_RISK" and w.state().lag_band == "warning"
        assert w.items() == []
        assert w.tick(lag=130) == []  # the state moved: no repeat
        assert w.services.outbox.drain(timeout=5)
        assert w.posts() == []
    finally:
        w.services.engine.dispose()


@pytest.mark.parametrize("extra,channel", [
    ("  - {name: billing, rpo: 5m, rto: 15m, active: us-east-1, standby: us-west-2, channel: C0BILLING,"
     " lag: {source: sim}, health: {us-east-1: sim, us-west-2: sim}}\n"
     "slack:\n  channels: {announcements: C0ANNOUNCE}\n", "C0BILLING"),
    ("  - {name: billing, rpo: 5m, rto: 15m, active: us-east-1, standby: us-west-2, channel: C0BILLING,"
     " lag: {source: sim}, health: {us-east-1: sim, us-west-2: sim}}\n"
     "slack:\n  channels: {announcements: C0ANNOUNCE}\nwatch: {channel: C0WATCH}\n", "C0WATCH"),
])
def test_channel_is_the_watch_channel_then_the_service_channel_then_announcements(db_url, extra, channel):
    w = World(BASE + extra, db_url)
    try:
        w.tick()
        w.source.lag["billing"] = 200
        w.source.lag["orders"] = 200
        w.tick()
        got = {p["service"]: p["channel"] for p in w.payloads()}
        assert got == {"billing": channel, "orders": "C0WATCH" if channel == "C0WATCH" else ANNOUNCE}
    finally:
        w.services.engine.dispose()


def test_each_change_is_one_outbox_item_in_its_own_stream(world):
    world.tick(lag=20)
    world.tick(lag=130)
    world.tick(lag=20)
    items = world.items()
    assert [i.stream for i in items] == ["slack:readiness:orders"] * 2
    assert [i.pace_key for i in items] == [f"slack:{ANNOUNCE}"] * 2  # paced with the channel's other posts
    assert len({i.idempotency_key for i in items}) == 2
    # the same change queued again (a retried pass, another replica) is one item
    with session_scope(world.services.engine) as s:
        assert not enqueue(s, parse(items[0]), world.now[0])
    assert len(world.items()) == 2


def test_every_lag_reading_is_recorded_for_the_digest(world):
    for lag in (20, 30, 40):
        world.tick(lag=lag)
    world.source.error = "down"
    world.tick()  # no value: nothing recorded
    with session_scope(world.services.engine) as s:
        rows = [(r.service, r.seconds) for r in s.exec(select(LagRecord).order_by(col(LagRecord.at)))]
    assert rows == [("orders", 20.0), ("orders", 30.0), ("orders", 40.0)]


def test_scheduler_jobs_follow_the_config(tmp_path):
    jobs.clear()
    text = WITH_CHANNEL + "digest: {cron: '30 8 * * fri', timezone: Europe/Berlin}\n"
    svc = build_services(parse_config(text.replace("watch: {hysteresis: 0.1}", "watch: {interval: 90s}"),
                                      "t.yaml", {}), db_url=f"sqlite:///{tmp_path}/a.db")
    try:
        defs = svc.scheduler._defs
        assert {"readiness_watch", "weekly_digest"} <= set(defs) and {"readiness_watch", "weekly_digest"} <= set(
            jobs.registered())
        watch = defs["readiness_watch"].trigger
        assert isinstance(watch, IntervalTrigger) and watch.interval == timedelta(seconds=90)
        digest = defs["weekly_digest"].trigger
        assert isinstance(digest, CronTrigger) and str(digest.timezone) == "Europe/Berlin"
        assert str(digest) == str(CronTrigger.from_crontab("30 8 * * fri", timezone="Europe/Berlin"))
    finally:
        svc.engine.dispose()
    jobs.clear()
    off = WITH_CHANNEL.replace("watch: {hysteresis: 0.1}", "watch: {enabled: false}\ndigest: {enabled: false}")
    svc = build_services(parse_config(off, "t.yaml", {}), db_url=f"sqlite:///{tmp_path}/b.db")
    try:
        assert not {"readiness_watch", "weekly_digest"} & set(svc.scheduler._defs)
        assert not {"readiness_watch", "weekly_digest"} & set(jobs.registered())
    finally:
        svc.engine.dispose()


def test_sandbox_lag_spike_is_announced_and_says_sandbox(tmp_path):
    text = WITH_CHANNEL.replace("sim: {kind: sandbox, timeout: 2.0}",
                                "sim: {kind: sandbox, timeout: 2.0, profiles: {orders: {lag: 20, jitter: 0}}}")
    svc = build_services(parse_config(text, "t.yaml", {}), db_url=f"sqlite:///{tmp_path}/s.db")
    try:
        svc.messenger = messenger = RecordingMessenger()
        passed_drill(svc, "orders", svc.clock() - timedelta(days=1))
        estate = svc.backends["sim"].estate
        assert watch_once(svc) == []
        estate.inject("orders", "lag_spike")  # 20s + 600s: past critical
        assert [(c["from"], c["to"], c["lag_s"], c["sandbox"]) for c in watch_once(svc)] == [
            ("READY", "NOT_READY", 620.0, True)]
        estate.clear("orders")
        assert [(c["from"], c["to"]) for c in watch_once(svc)] == [("NOT_READY", "READY")]
        assert svc.outbox.drain(timeout=10)
        posts = [r for kind, _c, r in messenger.log if kind == "post"]
        assert len(posts) == 2
        for reply in posts:
            blocks, fallback = svc.renderer.blocks(reply)
            assert fallback.endswith("· SANDBOX") and "*SANDBOX*" in blocks[-1]["elements"][0]["text"]
            assert "SANDBOX" in svc.renderer.text(reply)
    finally:
        svc.engine.dispose()
