"""bot.readiness: verdicts from readings, by pure functions, with a fixed ``now``."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from bot.readiness import (
    Assessment, DrillInfo, Finding, Targets, Verdict, assess, assess_drill, assess_health,
    assess_lag, order_worst_first, worst,
)
from bot.readings import Reading, Status

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
ACTIVE, STANDBY = "us-east-1", "us-west-2"
TARGETS = Targets(
    rpo=timedelta(minutes=5),
    rto=timedelta(minutes=15),
    warning=timedelta(minutes=2),
    critical=timedelta(minutes=4),
    stale_after=timedelta(minutes=10),
    drill_max_age=timedelta(days=30),
)


def lag(seconds: float | None = 30.0, *, status: Status = Status.OK, age: timedelta = timedelta(seconds=20),
        replicating: bool | None = True, error: str = "", detail: str = "") -> Reading:
    return Reading(kind="lag", source="db-lag", status=status,
                   observed_at=None if status is not Status.OK else NOW - age,
                   lag_seconds=seconds if status is Status.OK else None,
                   replicating=replicating if status is Status.OK else None, error=error, detail=detail)


def health(healthy: bool | None = True, *, status: Status = Status.OK, age: timedelta = timedelta(seconds=20),
           detail: str = "", error: str = "") -> Reading:
    return Reading(kind="health", source="probe", status=status,
                   observed_at=None if status is not Status.OK else NOW - age,
                   healthy=healthy if status is Status.OK else None, detail=detail, error=error)


def good_health() -> dict[str, Reading]:
    return {ACTIVE: health(True), STANDBY: health(True)}


GOOD_DRILL = DrillInfo(ended_at=NOW - timedelta(days=3), passed=True, rto_s=420.0, rpo_s=12.0, request_id=7)


def run(*, lag_reading: Reading | None = None, health_readings: dict[str, Reading] | None = None,
        drill: DrillInfo | None = GOOD_DRILL, service: str = "orders", targets: Targets = TARGETS) -> Assessment:
    return assess(service, "critical", ACTIVE, STANDBY, targets,
                  lag_reading if lag_reading is not None else lag(),
                  good_health() if health_readings is None else health_readings, drill, NOW)


def codes(a: Assessment) -> list[str]:
    return [f.code for f in a.reasons]


# -- READY -------------------------------------------------------------------------------

def test_all_good_is_ready_with_no_reasons():
    a = run()
    assert a.verdict is Verdict.READY
    assert a.reasons == ()
    assert [f.code for f in a.findings] == ["lag_ok", "healthy", "healthy", "drill_ok"]
    assert all(f.verdict is Verdict.READY for f in a.findings)
    assert a.assessed_at == NOW
    assert (a.service, a.tier, a.active, a.standby) == ("orders", "critical", ACTIVE, STANDBY)


def test_ready_lag_finding_carries_thresholds():
    f = assess_lag(lag(30), TARGETS, NOW)
    assert f == Finding(Verdict.READY, "lag_ok", {"lag": timedelta(seconds=30), "warning": TARGETS.warning,
                                                  "critical": TARGETS.critical, "rpo": TARGETS.rpo})


# -- AT_RISK -----------------------------------------------------------------------------

def test_lag_past_warning_is_at_risk():
    a = run(lag_reading=lag(150))
    assert a.verdict is Verdict.AT_RISK
    assert codes(a) == ["lag_warning"]


def test_lag_exactly_at_warning_is_at_risk():
    assert assess_lag(lag(120), TARGETS, NOW).verdict is Verdict.AT_RISK
    assert assess_lag(lag(119.9), TARGETS, NOW).verdict is Verdict.READY


def test_active_region_unhealthy_is_at_risk():
    a = run(health_readings={ACTIVE: health(False, detail="503"), STANDBY: health(True)})
    assert a.verdict is Verdict.AT_RISK
    assert codes(a) == ["active_unhealthy"]
    assert a.reasons[0].params == {"region": ACTIVE, "detail": "503"}


def test_no_drill_is_at_risk():
    a = run(drill=None)
    assert a.verdict is Verdict.AT_RISK
    assert codes(a) == ["no_drill"]
    assert a.reasons[0].params == {"max_age": TARGETS.drill_max_age}


def test_failed_drill_is_at_risk_even_when_recent():
    a = run(drill=DrillInfo(ended_at=NOW - timedelta(hours=1), passed=False))
    assert a.verdict is Verdict.AT_RISK
    assert codes(a) == ["drill_failed"]


def test_overdue_drill_is_at_risk():
    a = run(drill=DrillInfo(ended_at=NOW - timedelta(days=31), passed=True))
    assert a.verdict is Verdict.AT_RISK
    assert codes(a) == ["drill_overdue"]
    assert a.reasons[0].params["age"] == timedelta(days=31)


def test_drill_exactly_at_max_age_is_still_ok():
    f = assess_drill(DrillInfo(ended_at=NOW - TARGETS.drill_max_age, passed=True), TARGETS, NOW)
    assert (f.verdict, f.code) == (Verdict.READY, "drill_ok")
    f = assess_drill(DrillInfo(ended_at=NOW - TARGETS.drill_max_age - timedelta(seconds=1), passed=True),
                     TARGETS, NOW)
    assert (f.verdict, f.code) == (Verdict.AT_RISK, "drill_overdue")


# -- NOT_READY ---------------------------------------------------------------------------

def test_lag_past_critical_is_not_ready_but_not_past_rpo():
    a = run(lag_reading=lag(250))
    assert a.verdict is Verdict.NOT_READY
    assert codes(a) == ["lag_critical"]
    assert a.reasons[0].params["past_rpo"] is False


def test_lag_exactly_at_critical_is_not_ready():
    f = assess_lag(lag(240), TARGETS, NOW)
    assert (f.verdict, f.code) == (Verdict.NOT_READY, "lag_critical")
    assert assess_lag(lag(239.9), TARGETS, NOW).verdict is Verdict.AT_RISK


@pytest.mark.parametrize(("seconds", "past"), [(299.9, False), (300, True), (900, True)])
def test_lag_past_rpo_is_flagged(seconds, past):
    f = assess_lag(lag(seconds), TARGETS, NOW)
    assert f.verdict is Verdict.NOT_READY
    assert f.params["past_rpo"] is past


def test_replication_stopped_is_not_ready():
    a = run(lag_reading=lag(None, replicating=False, detail="ReplicaLag -1"))
    assert a.verdict is Verdict.NOT_READY
    assert codes(a) == ["replication_stopped"]
    assert a.reasons[0].params == {"source": "db-lag", "detail": "ReplicaLag -1"}


def test_replicating_false_wins_even_with_a_small_lag_value():
    f = assess_lag(lag(1.0, replicating=False), TARGETS, NOW)
    assert (f.verdict, f.code) == (Verdict.NOT_READY, "replication_stopped")


def test_ok_lag_reading_without_a_value_is_not_counted_as_replicating():
    f = assess_lag(lag(None, replicating=None), TARGETS, NOW)
    assert f.verdict is Verdict.NOT_READY


def test_standby_unhealthy_is_not_ready():
    a = run(health_readings={ACTIVE: health(True), STANDBY: health(False, detail="down")})
    assert a.verdict is Verdict.NOT_READY
    assert codes(a) == ["standby_unhealthy"]
    assert a.reasons[0].params["region"] == STANDBY


def test_health_reading_with_unknown_healthiness_is_not_healthy():
    f = assess_health(STANDBY, "standby", health(None), TARGETS, NOW)
    assert f.verdict is Verdict.NOT_READY


# -- UNKNOWN -----------------------------------------------------------------------------

@pytest.mark.parametrize("status", [Status.FAILED, Status.TIMEOUT, Status.MISSING, Status.STALE])
def test_unusable_lag_reading_is_unknown(status):
    a = run(lag_reading=lag(status=status, error="boom"))
    assert a.verdict is Verdict.UNKNOWN
    assert codes(a) == [status.value]
    assert a.reasons[0].params["part"] == "replication lag"
    assert a.reasons[0].params["source"] == "db-lag"


def test_failed_reading_is_never_counted_healthy_even_with_good_values():
    """A non-OK reading that still carries values (a bug in a backend) is not trusted."""
    for status in (Status.FAILED, Status.TIMEOUT, Status.STALE, Status.MISSING):
        reading = Reading("lag", "db-lag", status, observed_at=NOW, lag_seconds=1.0, replicating=True)
        assert assess_lag(reading, TARGETS, NOW).verdict is Verdict.UNKNOWN
        reading = Reading("health", "probe", status, observed_at=NOW, healthy=True)
        assert assess_health(ACTIVE, "active", reading, TARGETS, NOW).verdict is Verdict.UNKNOWN
        assert assess_health(STANDBY, "standby", reading, TARGETS, NOW).verdict is Verdict.UNKNOWN


def test_stale_lag_by_age_is_unknown():
    a = run(lag_reading=lag(10, age=timedelta(minutes=11)))
    assert a.verdict is Verdict.UNKNOWN
    f = a.reasons[0]
    assert f.code == "stale"
    assert f.params["age"] == timedelta(minutes=11)
    assert f.params["limit"] == TARGETS.stale_after


def test_lag_exactly_stale_after_old_is_still_fresh():
    assert assess_lag(lag(10, age=TARGETS.stale_after), TARGETS, NOW).verdict is Verdict.READY
    older = TARGETS.stale_after + timedelta(seconds=1)
    assert assess_lag(lag(10, age=older), TARGETS, NOW).verdict is Verdict.UNKNOWN


def test_stale_health_reading_is_unknown_not_healthy():
    a = run(health_readings={ACTIVE: health(True, age=timedelta(hours=1)), STANDBY: health(True)})
    assert a.verdict is Verdict.UNKNOWN
    assert codes(a) == ["stale"]
    assert a.reasons[0].params["part"] == f"health of {ACTIVE}"


@pytest.mark.parametrize("missing", [ACTIVE, STANDBY])
def test_health_reading_missing_for_a_region_is_unknown(missing):
    readings = good_health()
    del readings[missing]
    a = run(health_readings=readings)
    assert a.verdict is Verdict.UNKNOWN
    assert codes(a) == ["missing"]
    assert missing in a.reasons[0].params["error"]


def test_no_health_readings_at_all_is_unknown():
    a = run(health_readings={})
    assert a.verdict is Verdict.UNKNOWN
    assert codes(a) == ["missing", "missing"]


@pytest.mark.parametrize("status", [Status.FAILED, Status.TIMEOUT])
def test_failed_health_reading_is_unknown(status):
    a = run(health_readings={ACTIVE: health(True), STANDBY: health(status=status, error="connect refused")})
    assert a.verdict is Verdict.UNKNOWN
    assert a.reasons[0].params["error"] == "connect refused"


def test_future_observation_is_not_negative_age():
    reading = lag(10, age=-timedelta(minutes=5))
    assert reading.age(NOW) == timedelta(0)
    assert assess_lag(reading, TARGETS, NOW).verdict is Verdict.READY


# -- worst wins, reasons ordered ---------------------------------------------------------

def test_worst_order_of_verdicts():
    assert worst([]) is Verdict.READY
    assert worst([Verdict.READY, Verdict.AT_RISK]) is Verdict.AT_RISK
    assert worst([Verdict.AT_RISK, Verdict.UNKNOWN]) is Verdict.UNKNOWN
    assert worst([Verdict.UNKNOWN, Verdict.NOT_READY, Verdict.READY]) is Verdict.NOT_READY
    assert [v.rank for v in (Verdict.READY, Verdict.AT_RISK, Verdict.UNKNOWN, Verdict.NOT_READY)] == [0, 1, 2, 3]


def test_not_ready_beats_unknown_beats_at_risk_and_reasons_are_worst_first():
    a = run(
        lag_reading=lag(status=Status.TIMEOUT, error="no answer within 5 s"),        # UNKNOWN
        health_readings={ACTIVE: health(False), STANDBY: health(False)},            # AT_RISK, NOT_READY
        drill=None,                                                                  # AT_RISK
    )
    assert a.verdict is Verdict.NOT_READY
    assert [f.verdict for f in a.reasons] == [Verdict.NOT_READY, Verdict.UNKNOWN, Verdict.AT_RISK, Verdict.AT_RISK]
    assert codes(a) == ["standby_unhealthy", "timeout", "active_unhealthy", "no_drill"]


def test_unknown_beats_at_risk():
    a = run(lag_reading=lag(150), health_readings={ACTIVE: health(True)}, drill=None)
    assert a.verdict is Verdict.UNKNOWN
    assert codes(a)[0] == "missing"
    assert set(codes(a)[1:]) == {"lag_warning", "no_drill"}


def test_reasons_exclude_ready_findings():
    a = run(lag_reading=lag(150))
    assert len(a.findings) == 4
    assert all(f.verdict is not Verdict.READY for f in a.reasons)


def test_sandbox_flag_comes_from_readings():
    assert run().sandbox is False
    assert run(lag_reading=replace(lag(), sandbox=True)).sandbox is True
    assert run(health_readings={ACTIVE: replace(health(), sandbox=True), STANDBY: health()}).sandbox is True


def test_order_worst_first_sorts_by_verdict_then_name():
    items = [
        run(service="zeta"),                                   # READY
        run(service="beta", lag_reading=lag(150)),             # AT_RISK
        run(service="alpha"),                                  # READY
        run(service="omega", lag_reading=lag(500)),            # NOT_READY
        run(service="gamma", lag_reading=lag(status=Status.FAILED)),  # UNKNOWN
        run(service="delta", lag_reading=lag(300)),            # NOT_READY
    ]
    ordered = order_worst_first(items)
    assert [(a.service, a.verdict) for a in ordered] == [
        ("delta", Verdict.NOT_READY), ("omega", Verdict.NOT_READY), ("gamma", Verdict.UNKNOWN),
        ("beta", Verdict.AT_RISK), ("alpha", Verdict.READY), ("zeta", Verdict.READY),
    ]
    assert [a.service for a in items][0] == "zeta"  # the input is not reordered in place


def test_assessment_keeps_its_inputs():
    reading = lag(42)
    h = good_health()
    a = run(lag_reading=reading, health_readings=h)
    assert a.lag is reading
    assert a.health == h
    assert a.drill is GOOD_DRILL
    assert a.targets is TARGETS
