"""http_json lag source against a real local HTTP server: a number at a JSON path in the
stream's unit, headers with `${ENV}` secrets, the reading's age from the job's own clock,
and every timeout or error an UNKNOWN reading (never healthy), through /dr status too."""
from __future__ import annotations

import re
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import pydantic
import pytest

from bot.config import parse_config
from bot.readiness import Verdict
from bot.wiring import build_services
from integrations.base import LAG, ErrorKind, IntegrationError, Target
from integrations.http_json import HttpJson, parse_path
from tests.fakes.json_server import Answer, JsonServer, Request

OBJECTS = Target("shop", query="queue.depth", unit="objects")


class CopierStatus(JsonServer):
    """A replication job's status endpoint: answers ``answer`` after ``delay`` seconds."""

    def __init__(self):
        super().__init__()
        self.answer = Answer(200, {"queue": {"depth": 1234}, "oldest_pending_seconds": 90.5, "running": True,
                                   "updated_at": datetime.now(timezone.utc).isoformat()})
        self.delay = 0.0
        self.release = threading.Event()

    def handle(self, req: Request) -> Answer:
        if self.delay:
            self.release.wait(self.delay)
        return self.answer


@pytest.fixture
def job():
    with CopierStatus() as fake:
        yield fake
        fake.release.set()


def source(url, **opts):
    return HttpJson("r2-copier", HttpJson.Options.model_validate({"url": url + "/status", **opts}))


def test_a_number_at_the_streams_path_in_its_unit_with_the_headers(job):
    src = source(job.url, headers={"Authorization": "Bearer s3cret"})
    reading = src.read_lag(OBJECTS)
    assert (reading.seconds, reading.unit, reading.replicating) == (1234.0, "objects", True)
    assert reading.detail == f"queue.depth of {job.url}/status: 1234 objects"
    (call,) = job.calls("GET", "/status")
    assert call.headers["authorization"] == "Bearer s3cret"
    behind = src.read_lag(Target("shop", query="oldest_pending_seconds"))
    assert (behind.seconds, behind.unit) == (90.5, "seconds")
    assert LAG in HttpJson.capabilities


def test_path_of_the_source_and_milliseconds_for_seconds_streams(job):
    job.answer = Answer(200, {"jobs": [{"lag_ms": 2500}], "stats": {"objects.pending": "17"}})
    assert source(job.url, path="jobs[0].lag_ms", time_unit="ms").read_lag(Target("shop")).seconds == 2.5
    pending = source(job.url, time_unit="ms").read_lag(Target("shop", query='$.stats["objects.pending"]',
                                                               unit="objects"))
    assert pending.seconds == 17.0  # a count is never divided by 1000; a numeric string is a number


def test_the_jobs_own_clock_dates_the_reading(job):
    old = datetime.now(timezone.utc) - timedelta(minutes=20)
    job.answer = Answer(200, {"queue": {"depth": 3}, "updated_at": old.isoformat()})
    reading = source(job.url, timestamp_path="updated_at").read_lag(OBJECTS)
    assert abs((reading.observed_at - old).total_seconds()) < 0.001
    job.answer = Answer(200, {"queue": {"depth": 3}, "updated_at": old.timestamp()})
    assert abs((source(job.url, timestamp_path="updated_at").read_lag(OBJECTS).observed_at - old)
               .total_seconds()) < 0.001
    job.answer = Answer(200, {"queue": {"depth": 3}, "updated_at": "yesterday"})
    with pytest.raises(IntegrationError, match="updated_at of .* is 'yesterday', not a time"):
        source(job.url, timestamp_path="updated_at").read_lag(OBJECTS)


def test_a_stopped_job_is_not_replicating(job):
    job.answer = Answer(200, {"queue": {"depth": 0}, "running": False})
    reading = source(job.url, stopped_path="running").read_lag(OBJECTS)
    assert reading.replicating is False and reading.seconds is None
    assert "running of" in reading.detail and "not running" in reading.detail


@pytest.mark.parametrize("body, said", [
    ({"queue": {}}, re.escape("has nothing at queue.depth; check the path (keys at queue: none)")),
    ({"queue": {"depth": None}}, "queue.depth of .* is None, not a number"),
    ({"queue": {"depth": True}}, "is True, not a number"),
    ({"queue": {"depth": "many"}}, "is 'many', not a number"),
    ({"queue": {"depth": "NaN"}}, "is 'NaN', not a number"),
    ({"queue": {"size": 1}, "jobs": []}, re.escape("check the path (keys at queue: size)")),
    ([1, 2], re.escape("has nothing at queue.depth; check the path (at the top is list)")),
])
def test_no_number_at_the_path_is_a_permanent_error_never_a_zero(job, body, said):
    job.answer = Answer(200, body)
    with pytest.raises(IntegrationError, match=said) as err:
        source(job.url).read_lag(OBJECTS)
    assert err.value.kind is ErrorKind.PERMANENT


@pytest.mark.parametrize("status, kind, said", [
    (503, ErrorKind.TRANSIENT, "failed (HTTP 503); try again shortly"),
    (429, ErrorKind.TRANSIENT, "failed (HTTP 429)"),
    (401, ErrorKind.NOT_PERMITTED, "refused the request (HTTP 401); check the Authorization in headers"),
    (404, ErrorKind.PERMANENT, "answered HTTP 404; check the url"),
])
def test_http_errors_are_classified(job, status, kind, said):
    job.answer = Answer(status, {"error": "x"})
    with pytest.raises(IntegrationError, match=said.replace("(", r"\(").replace(")", r"\)")) as err:
        source(job.url).read_lag(OBJECTS)
    assert err.value.kind is kind


def test_not_json_is_permanent(job):
    job.answer = Answer(200, "<html>login</html>")
    with pytest.raises(IntegrationError, match="did not answer with JSON") as err:
        source(job.url).read_lag(OBJECTS)
    assert err.value.kind is ErrorKind.PERMANENT


def test_a_timeout_is_transient_and_bounded(job):
    job.delay = 5.0
    started = time.monotonic()
    with pytest.raises(IntegrationError, match="did not answer within 0.3 s") as err:
        source(job.url, timeout=0.3).read_lag(OBJECTS)
    assert err.value.kind is ErrorKind.TRANSIENT and time.monotonic() - started < 2.0


def test_a_refused_connection_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(IntegrationError, match="cannot connect to") as err:
        source(url).read_lag(OBJECTS)
    assert err.value.kind is ErrorKind.TRANSIENT


def test_options_and_paths_are_checked():
    assert parse_path('$.a.b[2]["c.d"]') == ("a", "b", 2, "c.d")
    with pytest.raises(ValueError, match="is not a JSON path"):
        parse_path("a..b")
    with pytest.raises(pydantic.ValidationError, match="path: 'queue depth' is not a JSON path"):
        HttpJson.Options.model_validate({"url": "http://x/status", "path": "queue depth"})
    with pytest.raises(pydantic.ValidationError, match="url must be http"):
        HttpJson.Options.model_validate({"url": "ftp://x/status"})
    opts = HttpJson.Options.model_validate({"url": "http://x/status"})
    assert "has no path" in HttpJson.lag_target_problem(opts, None, "objects")
    assert "is not a JSON path" in HttpJson.lag_target_problem(opts, "a b", "objects")
    assert HttpJson.lag_target_problem(opts, "queue.depth", "objects") is None


def test_check_gets_the_url_once(job):
    assert source(job.url).check().ok
    assert source(job.url, path="queue.depth").check().message.endswith("(queue.depth of "
                                                                        f"{job.url}/status: 1234 s).")
    job.answer = Answer(500, {})
    assert not source(job.url).check().ok


# -- through the config and /dr status -----------------------------------------------------------

ESTATE = """\
regions: [us-east-1, eu-west-1]
sources:
  sim: {kind: sandbox, profiles: {shop: {lag: 5, jitter: 0}}}
  r2-copier:
    kind: http_json
    url: %s/status
    headers: {Authorization: "Bearer ${COPIER_TOKEN}"}
    timeout: 0.5
services:
  - name: shop
    rpo: 5m
    rto: 30m
    active: us-east-1
    standby: eu-west-1
    replication:
      - {name: shop-db, source: sim}
      - {name: r2-queue, source: r2-copier, target: queue.depth, unit: objects, warning: 500, critical: 5000}
    health: {us-east-1: sim, eu-west-1: sim}
"""


def test_a_stream_read_by_http_json_in_status_with_the_secret_from_the_environment(job, tmp_path):
    loaded = parse_config(ESTATE % job.url, "drbot.yaml", {"COPIER_TOKEN": "from-env"})
    sv = build_services(loaded, db_url=f"sqlite:///{tmp_path}/s.db")
    try:
        def stream():
            (a,) = sv.status.report("shop", fresh=True).assessments
            return a, a.streams[1]

        a, r2 = stream()
        assert (r2.spec.name, r2.reading.lag_seconds, r2.verdict) == ("r2-queue", 1234.0, Verdict.AT_RISK)
        assert job.calls("GET", "/status")[-1].headers["authorization"] == "Bearer from-env"
        job.answer = Answer(200, {"queue": {"depth": 9000}})
        a, r2 = stream()
        assert a.verdict is Verdict.NOT_READY and r2.verdict is Verdict.NOT_READY
        assert sv.renderer.reason(a.reasons[0]) == "stream r2-queue: 9,000 objects is past critical 5,000 objects"
        job.delay = 3.0  # the job hangs: UNKNOWN, never healthy, and the report is not held up
        started = time.monotonic()
        a, r2 = stream()
        assert time.monotonic() - started < 2.5
        assert r2.verdict is Verdict.UNKNOWN and r2.reading.status.value == "timeout"
        assert any(sv.renderer.reason(f).startswith("stream r2-queue unknown: r2-copier gave no answer within")
                   for f in a.reasons), [sv.renderer.reason(f) for f in a.reasons]
    finally:
        job.release.set()
        sv.engine.dispose()
