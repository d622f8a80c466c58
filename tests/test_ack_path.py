"""Acks that never wait for work, and one status report shared by the people asking at once.

Real parts: the app over HTTP (uvicorn) signed as Slack signs, the fake Slack Web API, and
sources (Prometheus lag, HTTP health probes) served by a local HTTP server that counts
every request and can hold its answers until released (bench/slow_server.py)."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from slack_bolt import BoltRequest

from bench.slow_server import SlowServer
from bot.config import parse_config
from bot.wiring import build_services
from tests.app_server import running_app
from tests.helpers import wait_until
from transports.slack.app import SlackSettings, build_app
from transports.slack.work import AckTraffic, WorkPool

LAG_QUERY = 'lag_seconds{cluster="orders"}'


def config_text(url: str) -> str:
    return f"""
regions: [us-east-1, us-west-2]
sources:
  lag: {{kind: prometheus, url: '{url}', query: '{LAG_QUERY}', timeout: 20}}
  east: {{kind: http_probe, url: '{url}/health/east', timeout: 20}}
  west: {{kind: http_probe, url: '{url}/health/west', timeout: 20}}
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {{source: lag, stale_after: 30s}}
    health: {{us-east-1: east, us-west-2: west}}
"""


class Clock:
    """The services' clock: real time plus what the test adds."""

    def __init__(self):
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


def services_for(source: SlowServer, db_url: str, clock=None):
    loaded = parse_config(config_text(source.url), "ack-path.yaml", {})
    return build_services(loaded, db_url=db_url, **({"clock": clock} if clock else {}))


def replies(fake_slack, name: str) -> list:
    return [c for c in fake_slack.calls("response_url") if c.params["_path"] == f"/response/{name}"]


def per_request(source: SlowServer) -> dict:
    return dict(source.requests)


ONE_READ_EACH = {("/api/v1/query", LAG_QUERY): 1, ("/api/v1/query", f"timestamp({LAG_QUERY})"): 1,
                 ("/health/east", ""): 1, ("/health/west", ""): 1}


# -- the ack does not wait for the work ------------------------------------------------------

@pytest.mark.parametrize("how", ["command", "refresh"])
def test_the_200_arrives_while_the_status_source_blocks_and_the_reply_after_release(how, fake_slack, tmp_path):
    with SlowServer() as source:
        services = services_for(source, f"sqlite:///{tmp_path}/ack.db")
        source.hold()
        try:
            with running_app(services, fake_slack) as app:
                url = fake_slack.response_url("r")
                if how == "command":
                    r = app.sender.slash_command("status", response_url=url)
                else:
                    r = app.sender.block_action("status_refresh", "*", user_id="U_ALICE", response_url=url)
                assert r.status_code == 200, r.text
                wait_until("the report to call its sources", lambda: source.count() == 4)
                assert replies(fake_slack, "r") == [], "answered before its sources did"
                source.release()
                (reply,) = wait_until("the status reply", lambda: replies(fake_slack, "r"))
                assert "orders" in reply.params["text"] or "orders" in str(reply.params["blocks"])
                assert per_request(source) == ONE_READ_EACH
        finally:
            source.release()
            services.engine.dispose()


def test_concurrent_status_commands_share_one_read_of_each_source(db_url, fake_slack):
    """Five people ask at once (on SQLite and PostgreSQL): five acks, five replies, one
    report, and each source is called once."""
    with SlowServer() as source:
        services = services_for(source, db_url)
        source.hold()
        try:
            with running_app(services, fake_slack) as app:
                for i in range(5):
                    r = app.sender.slash_command("status", user_id=f"U{i}", user_name=f"user{i}",
                                                 response_url=fake_slack.response_url(f"s{i}"))
                    assert r.status_code == 200, r.text
                shared = services.status.shared
                wait_until("the other four to join the first report",
                           lambda: (shared.runs, shared.joined) == (1, 4),
                           details=lambda: f"runs {shared.runs}, joined {shared.joined}")
                assert len(fake_slack.calls("response_url")) == 0
                source.release()
                wait_until("five replies", lambda: len(fake_slack.calls("response_url")) == 5)
                assert per_request(source) == ONE_READ_EACH
                assert sorted(c.params["_path"] for c in fake_slack.calls("response_url")) == \
                    [f"/response/s{i}" for i in range(5)]
        finally:
            source.release()
            services.engine.dispose()


# -- the short cache: never past stale_after, and Refresh reads again -----------------------

def test_kept_readings_serve_later_reports_until_stale_after_and_fresh_reads_again(tmp_path):
    clock = Clock()
    with SlowServer(sample_age=25) as source:  # the lag was sampled 25 s before each read
        services = services_for(source, f"sqlite:///{tmp_path}/cache.db", clock)
        services.status.share_ttl = timedelta(minutes=5)
        try:
            (first,) = services.status.report().assessments
            assert per_request(source) == ONE_READ_EACH and first.lag.ok

            clock.offset = timedelta(seconds=2)  # 27 s old: still within stale_after (30 s)
            (again,) = services.status.report().assessments
            assert per_request(source) == ONE_READ_EACH, "read again within the cache"
            assert again.lag.observed_at == first.lag.observed_at, "a kept reading keeps its own age"

            clock.offset = timedelta(seconds=6)  # 31 s old: past stale_after, so read again
            (later,) = services.status.report().assessments
            assert source.requests[("/api/v1/query", LAG_QUERY)] == 2
            assert later.lag.observed_at > first.lag.observed_at
            assert source.count("/health/east") == 1, "health readings seconds old are still kept"

            (fresh,) = services.status.report(fresh=True).assessments  # Refresh
            assert source.requests[("/api/v1/query", LAG_QUERY)] == 3
            assert source.count("/health/east") == source.count("/health/west") == 2
        finally:
            services.engine.dispose()


def test_without_share_ttl_every_report_reads_every_source(tmp_path):
    with SlowServer() as source:
        services = services_for(source, f"sqlite:///{tmp_path}/nocache.db")
        try:
            services.status.report()
            services.status.report()
            assert set(per_request(source).values()) == {2}
        finally:
            services.engine.dispose()


def test_concurrent_refreshes_share_one_flight(tmp_path):
    with SlowServer() as source:
        services = services_for(source, f"sqlite:///{tmp_path}/refresh.db")
        services.status.share_ttl = timedelta(minutes=5)
        try:
            services.status.report()
            source.hold()
            reports = []
            threads = [threading.Thread(target=lambda: reports.append(services.status.report(fresh=True)))
                       for _ in range(3)]
            for t in threads:
                t.start()
            shared = services.status.shared
            wait_until("two refreshes to join the first", lambda: shared.joined == 2)
            source.release()
            for t in threads:
                t.join(timeout=10)
            assert len(reports) == 3 and reports[0] is reports[1] is reports[2]
            assert set(per_request(source).values()) == {2}, "one fresh read of each source, not three"
        finally:
            source.release()
            services.engine.dispose()


# -- the work after acks yields to the acks in hand ------------------------------------------

def test_work_waits_while_an_ack_is_in_hand_and_starts_when_it_is_answered():
    traffic = AckTraffic()
    pool = WorkPool(traffic, threads=2)
    try:
        with traffic.acking():
            done = pool.submit(lambda: "reply sent")
            wait_until("the task to wait for the ack", lambda: traffic.waiting == 1)
            assert not done.done()
        assert done.result(timeout=10) == "reply sent"
        assert traffic.deferred == 1 and traffic.waiting == 0
    finally:
        pool.shutdown(wait=True)


def test_work_never_waits_past_max_defer_however_busy_the_acks():
    traffic = AckTraffic(max_defer=0.2)
    pool = WorkPool(traffic, threads=1)
    try:
        with traffic.acking():  # an ack that never ends
            assert pool.submit(lambda: 42).result(timeout=10) == 42
        assert traffic.deferred == 1
    finally:
        pool.shutdown(wait=True)


def test_socket_mode_dispatch_acks_while_the_source_blocks_and_replies_after(fake_slack, tmp_path):
    """Socket Mode hands each envelope to ``app.dispatch`` and sends back what it returns:
    that return comes while the status's source is still held."""
    with SlowServer() as source:
        services = services_for(source, f"sqlite:///{tmp_path}/socket.db")
        app = build_app(services, SlackSettings(bot_token="xoxb-test", api_url=fake_slack.base_url))
        source.hold()
        try:
            body = {"command": "/dr", "text": "status", "user_id": "U_ALICE", "user_name": "alice",
                    "channel_id": "C_INC", "team_id": "T1", "api_app_id": "A_DRBOT",
                    "response_url": fake_slack.response_url("sock"), "trigger_id": "1.2.abc"}
            response = app.dispatch(BoltRequest(body=body, mode="socket_mode"))
            assert response.status == 200
            wait_until("the report to call its sources", lambda: source.count() == 4)
            assert replies(fake_slack, "sock") == []
            source.release()
            wait_until("the status reply", lambda: replies(fake_slack, "sock"))
        finally:
            source.release()
            app.stop()
            services.engine.dispose()
