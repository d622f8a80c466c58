"""Alert storm: 5,000 Alertmanager alerts for 20 services POSTed over HTTP to the running
app, in grouped payloads from several senders at once. Checks that none is lost and counts
the Slack messages each incident produced once the outbox has delivered everything."""
from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import httpx
from sqlmodel import func, select

from bot.config import parse_config
from bot.store import session_scope
from bot.store.incident_tables import Alert, Incident, OutboxItem, OutboxState
from bot.wiring import build_services
from tests.app_server import running_app
from tests.fakes.slack_api import FakeSlack

SERVICES = 20
TOKEN = "bench-token"


def config_text() -> str:
    lines = ["regions: [us-east-1, us-west-2]", "sources:", "  sim: {kind: sandbox}", "services:"]
    for i in range(SERVICES):
        lines += [f"  - {{name: svc-{i:02d}, rpo: 5m, rto: 15m, active: us-east-1, standby: us-west-2, "
                  "lag: {source: sim}, health: {us-east-1: sim, us-west-2: sim}}"]
    lines += ["alerts:", f"  alertmanager_token: {TOKEN}", "incidents:", "  responders: [UONCALL]"]
    return "\n".join(lines) + "\n"


def payload(batch: int, size: int) -> dict:
    now = datetime.now(timezone.utc).isoformat()
    alerts = []
    for k in range(size):
        n = batch * size + k
        svc = f"svc-{n % SERVICES:02d}"
        alerts.append({"status": "firing", "fingerprint": f"fp{n:06d}",
                       "labels": {"alertname": "HighErrorRate" if n % 2 else "ReplicaLagHigh", "service": svc,
                                  "severity": "critical", "instance": f"i-{n}"},
                       "annotations": {"summary": f"alert {n} on {svc}"}, "startsAt": now,
                       "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph"})
    return {"version": "4", "groupKey": f"{{}}:{{batch=\"{batch}\"}}", "status": "firing", "receiver": "drbot",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "truncatedAlerts": 0, "alerts": alerts}


def run(tmp: str, total: int = 5000, batch_size: int = 25, senders: int = 4) -> dict:
    services = build_services(parse_config(config_text(), "storm.yaml", {}), db_url=f"sqlite:///{tmp}/storm.db")
    batches = total // batch_size
    with FakeSlack() as fake, running_app(services, fake) as app:
        services.outbox.start(interval=0.2)
        client = httpx.Client(timeout=60)

        def send(b: int) -> int:
            r = client.post(f"{app.url}/alerts/alertmanager", content=json.dumps(payload(b, batch_size)),
                            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            return r.status_code

        t0 = time.perf_counter()
        with ThreadPoolExecutor(senders) as pool:
            codes = Counter(pool.map(send, range(batches)))
        took = time.perf_counter() - t0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with session_scope(services.engine) as s:
                left = s.exec(select(func.count()).select_from(OutboxItem)
                              .where(OutboxItem.state == OutboxState.PENDING)).one()
            if not left:
                break
            time.sleep(0.2)
        services.outbox.stop()
        with session_scope(services.engine) as s:
            stored = s.exec(select(func.count()).select_from(Alert)).one()
            incidents = s.exec(select(Incident)).all()
            channels = {i.channel_id for i in incidents}
        posts = Counter(c.params.get("channel") for c in fake.calls("chat.postMessage"))
        updates = Counter(c.params.get("channel") for c in fake.calls("chat.update"))
        client.close()
    services.engine.dispose()
    per_incident = [posts.get(ch, 0) for ch in channels]
    return {"alerts": total, "stored": stored, "http": dict(codes), "seconds": took, "per_second": total / took,
            "incidents": len(incidents), "posts_max": max(per_incident, default=0),
            "updates_max": max((updates.get(ch, 0) for ch in channels), default=0), "outbox_left": left}
