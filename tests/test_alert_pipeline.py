"""Alert intake as a pipeline (bot.alerts.inbox, bot.alerts.drain): a 200 means the
payload is stored; the drain processes it later, in batches, exactly once, across a
crash between the two halves and with two drains on one PostgreSQL database.

Real parts only: the app over HTTP (uvicorn), SQLite and PostgreSQL. A poison payload is
made by the database itself (a trigger refusing one fingerprint), a crash by SIGKILL of a
real process in the middle of its batch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import col

from bot.alerts.drain import MAX_ATTEMPTS, Drain
from bot.alerts.normalise import read
from bot.config import parse_config
from bot.incident_view import context_of
from bot.render import Reply
from bot.store.incident_tables import Alert, AlertInbox, Incident
from bot.store.models import TimelineEvent
from bot.wiring import build_services
from tests.app_server import running_app
from tests.helpers import rows, wait_until
from tests.postgres import temporary_schema

TOKEN = "am-token-pipeline"
SERVICES = ("orders", "payments", "search")
CONFIG = "regions: [us-east-1, us-west-2]\nsources:\n  sim: {kind: sandbox}\nservices:\n" + "".join(
    f"  - {{name: {name}, rpo: 5m, rto: 15m, active: us-east-1, standby: us-west-2, lag: {{source: sim}}, "
    f"health: {{us-east-1: sim, us-west-2: sim}}}}\n" for name in SERVICES) + f"""alerts:
  alertmanager_token: {TOKEN}
incidents:
  responders: [UONCALL]
"""


def build(db_url: str):
    return build_services(parse_config(CONFIG, "pipeline.yaml", {}), db_url=db_url)


def alert(fingerprint: str, service: str = "orders", status: str = "firing", name: str = "ReplicaLagHigh") -> dict:
    return {"status": status, "fingerprint": fingerprint, "startsAt": "2024-05-01T12:00:00Z",
            "endsAt": "2024-05-01T12:20:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "labels": {"alertname": name, "service": service, "severity": "critical"},
            "annotations": {"summary": f"{name} {fingerprint} on {service}"}}


def payload(*alerts: dict) -> dict:
    return {"version": "4", "status": "firing", "receiver": "drbot", "groupKey": "{}", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "alerts": list(alerts)}


def post(url: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/alerts/alertmanager", content=json.dumps(body), timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})


def store(services, body: dict) -> int:
    """As the endpoint stores a valid payload (validated, then one row), without HTTP."""
    return services.inbox.inbox.store("alertmanager", json.dumps(body), read("alertmanager", body, services.config))


def events(services, kind: str) -> list[TimelineEvent]:
    return rows(services, TimelineEvent, TimelineEvent.kind == kind)


def inbox(services) -> list[AlertInbox]:
    return rows(services, AlertInbox)


# -- accepted, then processed -------------------------------------------------------------

def test_a_200_is_a_stored_payload_that_the_drain_processes(db_url, fake_slack):
    services = build(db_url)
    try:
        with running_app(services, fake_slack) as app:
            answers = [post(app.url, payload(alert(f"o{i}"), alert(f"p{i}", "payments"))) for i in range(3)]
            assert [r.status_code for r in answers] == [200] * 3, [r.text for r in answers]
            assert [r.json()["accepted"] for r in answers] == [2, 2, 2]
            assert len({r.json()["id"] for r in answers}) == 3
            assert services.inbox.drain(timeout=30)
            assert inbox(services) == []  # processed rows leave the inbox
            alerts = rows(services, Alert)
            assert sorted(a.fingerprint for a in alerts) == sorted(f"am:{p}{i}" for p in "op" for i in range(3))
            incidents = {json.loads(i.services)[0]: i.id for i in rows(services, Incident)}
            assert set(incidents) == {"orders", "payments"}
            assert all(a.incident_id == incidents[a.service] for a in alerts)
            metrics = httpx.get(f"{app.url}/metrics", timeout=10).text
            assert "drbot_alerts_processed_total 6.0" in metrics
            assert "drbot_alert_inbox_depth 0.0" in metrics and "drbot_alert_inbox_failed 0.0" in metrics
    finally:
        services.engine.dispose()


def test_a_payload_that_does_not_fit_is_refused_before_anything_is_stored(db_url, fake_slack):
    services = build(db_url)
    try:
        with running_app(services, fake_slack) as app:
            bad = payload(alert("x1"))
            bad["alerts"][0]["labels"] = ["not", "an", "object"]
            r = post(app.url, bad)
            assert r.status_code == 400 and "alerts[0].labels: must be an object" in r.json()["error"]
            assert inbox(services) == [] and rows(services, Alert) == []
    finally:
        services.engine.dispose()


# -- nothing accepted is lost across a crash between the halves ----------------------------

def test_stored_payloads_survive_a_stop_before_processing_and_are_processed_once_after(db_url, fake_slack):
    first = build(db_url)
    with running_app(first, fake_slack) as app:
        first.inbox.stop()  # the process dies before its drain takes anything
        for i in range(4):
            assert post(app.url, payload(alert(f"o{i}"), alert(f"s{i}", "search"))).status_code == 200
    assert len(inbox(first)) == 4 and rows(first, Alert) == []
    first.engine.dispose()

    second = build(db_url)  # the restart
    try:
        second.inbox.start(interval=0.05)
        wait_until("the stored payloads processed", lambda: not inbox(second), timeout=30)
        second.inbox.stop()
        alerts = rows(second, Alert)
        assert len(alerts) == 8 and all(a.times_seen == 1 for a in alerts)
        assert len(rows(second, Incident)) == 2
        assert len(events(second, "incident.opened")) == 2
        fired = events(second, "alert.firing")
        assert sum(json.loads(e.data).get("alerts", 1) for e in fired) == 8  # each alert on a timeline once
    finally:
        second.engine.dispose()


CHILD = """
import sys
from bot.config import parse_config
from bot.wiring import build_services
services = build_services(parse_config(sys.argv[2], "pipeline.yaml", {}), db_url=sys.argv[1])
print("processing", flush=True)
services.inbox.run_once()
print("committed", flush=True)
"""


@pytest.mark.postgres
def test_a_drain_killed_in_the_middle_of_its_batch_leaves_it_whole_for_the_next(pg_url, tmp_path):
    with temporary_schema(pg_url) as url:
        services = build(url)
        try:
            for i in range(3):
                store(services, payload(alert(f"k{i}"), alert(f"m{i}", "payments")))
            with services.engine.begin() as conn:  # the batch's INSERT stalls: time to kill its process
                conn.execute(text("CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS "
                                  "$$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$"))
                conn.execute(text("CREATE TRIGGER stall BEFORE INSERT ON alert FOR EACH STATEMENT "
                                  "EXECUTE FUNCTION stall()"))
            errors = tmp_path / "child.err"
            child = subprocess.Popen([sys.executable, "-c", CHILD, url, CONFIG], stdout=subprocess.PIPE, text=True,
                                     stderr=errors.open("w"), cwd=os.getcwd())
            try:
                assert child.stdout.readline().strip() == "processing"

                def stalled() -> list[int]:  # the child's backend, holding every inbox row of its batch
                    with services.engine.begin() as conn:  # (rows are looked at only once it stalls: a
                        pids = conn.execute(text(  # look locks them, and a claim meanwhile would skip them)
                            "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                            "AND query ~ '^INSERT INTO alert '")).scalars().all()
                        if not pids:
                            return []
                        free = conn.execute(text("SELECT id FROM alert_inbox FOR UPDATE SKIP LOCKED")).all()
                    assert free == [], f"rows outside the child's batch: {free}"
                    return list(pids)

                backends = wait_until("the child in the middle of its batch", stalled, timeout=30,
                                      details=lambda: f"exit {child.poll()}: {errors.read_text()[-2000:]}")
                child.send_signal(signal.SIGKILL)
                child.wait(10)
            finally:
                child.kill()
            with services.engine.begin() as conn:  # its connection is gone: the server ends the backend
                for pid in backends:
                    conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with services.engine.begin() as conn:
                conn.execute(text("DROP TRIGGER stall ON alert"))
            assert rows(services, Alert) == [] and len(inbox(services)) == 3  # rolled back whole

            restarted = Drain(services)
            wait_until("the batch released and processed", lambda: restarted.run_until_empty() or not inbox(services),
                       timeout=30)
            assert not inbox(services)
            alerts = rows(services, Alert)
            assert len(alerts) == 6 and all(a.times_seen == 1 for a in alerts)
            assert len(rows(services, Incident)) == 2
            assert sum(json.loads(e.data).get("alerts", 1) for e in events(services, "alert.firing")) == 6
        finally:
            services.engine.dispose()


# -- two drains on one database -------------------------------------------------------------

@pytest.mark.postgres
def test_two_drains_on_postgresql_process_a_burst_exactly_once(pg_url):
    with temporary_schema(pg_url) as url:
        a, b = build(url), build(url)
        try:
            sent = 0
            for i in range(60):  # 60 payloads; every fingerprint is sent twice, in different payloads
                store(a, payload(*(alert(f"f{(i * 5 + k) % 150}", SERVICES[(i * 5 + k) % 3]) for k in range(5))))
                sent += 5
            took: dict[str, int] = {"a": 0, "b": 0}
            drains = {"a": Drain(a, batch=25), "b": Drain(b, batch=25)}
            for name, drain in drains.items():
                drain.listeners.append(lambda n, _secs, name=name: took.__setitem__(name, took[name] + n))
            go = threading.Barrier(2)

            def work(drain: Drain) -> None:
                go.wait()
                drain.run_until_empty()

            threads = [threading.Thread(target=work, args=(d,)) for d in drains.values()]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not inbox(a)
            assert took["a"] + took["b"] == sent  # every payload taken by one drain only
            alerts = rows(a, Alert)
            assert len(alerts) == 150 and sum(x.times_seen for x in alerts) == sent
            incidents = rows(a, Incident)
            assert sorted(json.loads(i.services)[0] for i in incidents) == sorted(SERVICES)
            assert len(events(a, "incident.opened")) == 3
            on_timeline = [fp for e in events(a, "alert.firing")
                           for fp in json.loads(e.data).get("fingerprints", [json.loads(e.data).get("fingerprint")])]
            assert sorted(on_timeline) == sorted(f"am:f{n}" for n in range(150))  # each once, no duplicate
            owner = {json.loads(i.services)[0]: i.id for i in incidents}
            assert all(x.incident_id == owner[x.service] for x in alerts)
        finally:
            a.engine.dispose()
            b.engine.dispose()


@pytest.mark.postgres
def test_an_older_notification_processed_after_a_newer_one_cannot_set_an_older_status(pg_url):
    """Replica A holds the firing (it came first); replica B processes the resolved that came
    after it; then A's firing is processed: the alert stays resolved, the firing counted."""
    with temporary_schema(pg_url) as url:
        services = build(url)
        try:
            firing = store(services, payload(alert("flip")))
            store(services, payload(alert("flip", status="resolved")))
            other = services.engine.connect()  # another replica, in the middle of its batch
            try:
                other.execute(text("SELECT id FROM alert_inbox WHERE id = :id FOR UPDATE"), {"id": firing})
                Drain(services).run_once()  # takes the resolved one only: the firing is locked
                assert [r.id for r in inbox(services)] == [firing]
            finally:
                other.rollback()
                other.close()
            Drain(services).run_until_empty()
            [flip] = rows(services, Alert)
            assert (flip.status, flip.times_seen) == ("resolved", 2)
            assert flip.ends_at is not None
            assert rows(services, Incident) == []  # the late firing opened nothing
        finally:
            services.engine.dispose()


# -- poison ---------------------------------------------------------------------------------

def _refuse(services, fingerprint: str) -> None:
    """A database that refuses one alert: the payload holding it can never be stored."""
    with services.engine.begin() as conn:
        if services.engine.dialect.name == "sqlite":
            conn.execute(text(f"CREATE TRIGGER poison BEFORE INSERT ON alert WHEN NEW.fingerprint = '{fingerprint}' "
                              "BEGIN SELECT RAISE(ABORT, 'poisoned alert'); END"))
            return
        conn.execute(text("CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                          f"IF NEW.fingerprint = '{fingerprint}' THEN RAISE EXCEPTION 'poisoned alert'; END IF; "
                          "RETURN NEW; END $$"))
        conn.execute(text("CREATE TRIGGER poison BEFORE INSERT ON alert FOR EACH ROW EXECUTE FUNCTION poison()"))


def test_a_poison_payload_is_kept_with_its_error_and_never_blocks_the_others(db_url, fake_slack, caplog):
    services = build(db_url)
    try:
        _refuse(services, "am:bad")
        with running_app(services, fake_slack) as app:
            services.inbox.stop()
            for body in (payload(alert("good1")), payload(alert("bad"), alert("also")), payload(alert("good2"))):
                assert post(app.url, body).status_code == 200
            with services.engine.begin() as conn:  # a stored body that no longer reads (written by hand)
                conn.execute(text("INSERT INTO alert_inbox (endpoint, received_at, body, alerts, done, state, "
                                  "attempts, error) VALUES ('alertmanager', CURRENT_TIMESTAMP, '{\"version\": \"4\", "
                                  "\"alerts\": 7}', 1, 0, 'pending', 0, '')"))
            services.inbox.start(interval=0.05)
            wait_until("the poison given up", lambda: [r for r in inbox(services) if r.state == "pending"] == [],
                       timeout=30)
            assert sorted(a.fingerprint for a in rows(services, Alert)) == ["am:good1", "am:good2"]
            poison, unreadable = inbox(services)
            assert (poison.state, poison.attempts) == ("failed", MAX_ATTEMPTS) and "poisoned alert" in poison.error
            assert (unreadable.state, unreadable.attempts) == ("failed", 1)
            assert "alerts: must be a list" in unreadable.error
            metrics = httpx.get(f"{app.url}/metrics", timeout=10).text
            assert "drbot_alert_inbox_failed 2.0" in metrics
            assert 'drbot_alert_payloads_failed_total{endpoint="alertmanager"} 2.0' in metrics
        assert sum("alert.payload_failed" in r.getMessage() for r in caplog.records) == 2
    finally:
        services.engine.dispose()


# -- batches ------------------------------------------------------------------------------

def test_one_timeline_event_per_incident_per_batch_and_its_text(tmp_path):
    services = build(f"sqlite:///{tmp_path}/drbot.db")
    try:
        for i in range(4):
            store(services, payload(alert(f"o{i}"), alert(f"p{i}", "payments", name="PaymentsDown")))
        services.inbox.run_once()  # one batch: all four payloads
        [orders, payments] = rows(services, Incident)
        fired = events(services, "alert.firing")
        assert [(e.incident_id, json.loads(e.data)["alerts"]) for e in fired] == [(orders.id, 4), (payments.id, 4)]
        assert json.loads(fired[1].data)["signal"] == "health"

        store(services, payload(alert("o0", status="resolved"), alert("o1", status="resolved"), alert("o9")))
        store(services, payload(alert("o0", status="resolved")))  # a repeat: counted, not on the timeline
        services.inbox.run_once()
        [changed] = events(services, "alert.changed")
        detail = json.loads(changed.data)
        assert (changed.incident_id, detail["alerts"], detail["firing"], detail["resolved"]) == (orders.id, 3, 1, 2)
        assert len(events(services, "alert.firing")) == 2 and events(services, "alert.resolved") == []
        assert rows(services, Alert, Alert.fingerprint == "am:o0")[0].times_seen == 2

        timeline = services.renderer.text(Reply("timeline", context_of(services, orders.id)))
        assert "4 alerts firing (alertmanager, critical, lag): ReplicaLagHigh o0 on orders" in timeline
        assert "3 alerts: 1 firing, 2 resolved" in timeline
    finally:
        services.engine.dispose()


def test_a_payload_larger_than_a_batch_is_processed_in_parts_that_survive_a_restart(tmp_path):
    services = build(f"sqlite:///{tmp_path}/drbot.db")
    try:
        store(services, payload(*(alert(f"big{i:03d}", SERVICES[i % 3]) for i in range(250))))
        first = Drain(services, batch=100)
        first.run_once()
        [row] = inbox(services)
        assert row.done == 100 and len(rows(services, Alert)) == 100
        Drain(services, batch=100).run_until_empty()  # another process: reads the stored body again
        assert inbox(services) == []
        alerts = rows(services, Alert)
        assert len(alerts) == 250 and all(a.times_seen == 1 for a in alerts)
        assert {a.incident_id for a in alerts} == {i.id for i in rows(services, Incident)}
        assert len(rows(services, Incident)) == 3
    finally:
        services.engine.dispose()


def test_inline_services_process_at_once(tmp_path):
    """The shell and the CLI: no worker thread; an accepted payload is processed before
    ``accept`` returns, so the incident is there at once."""
    services = build_services(parse_config(CONFIG, "pipeline.yaml", {}), db_url=f"sqlite:///{tmp_path}/drbot.db",
                              inline_runs=True)
    try:
        body = payload(alert("now"))
        services.inbox.accept("alertmanager", json.dumps(body), read("alertmanager", body, services.config))
        [inc] = rows(services, Incident)
        assert rows(services, Alert, col(Alert.incident_id) == inc.id)[0].fingerprint == "am:now"
        assert inbox(services) == []
    finally:
        services.engine.dispose()
