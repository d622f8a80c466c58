"""The drbot CLI: status exit codes and JSON, the shell driving the same commands."""
from __future__ import annotations

import io
import json
from pathlib import Path

from sqlalchemy import update

from bot.alerts.normalise import read
from bot.config import parse_config
from bot.messenger import RecordingMessenger
from bot.store import session_scope
from bot.store.incident_tables import Alert, AlertInbox
from bot.wiring import build_services
from bot.render import Reply
from transports.cli import main
from transports.shell import Shell
from commands.router import dispatch
from tests.conftest import SANDBOX_CONFIG
from tests.helpers import rows

ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path, text):
    p = tmp_path / "drbot.yaml"
    p.write_text(text)
    return str(p)


def test_status_exits_1_when_not_every_service_is_ready(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/d.db")
    code = main(["status", "--config", _write(tmp_path, SANDBOX_CONFIG)])
    out = capsys.readouterr().out
    assert code == 1  # no drill on record: AT RISK
    assert "AT RISK" in out and "orders" in out and "payments" in out


def test_status_json_names_each_service_verdict_and_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/d.db")
    code = main(["status", "orders", "--json", "--config", _write(tmp_path, SANDBOX_CONFIG)])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    (svc,) = data["services"]
    assert svc["service"] == "orders" and svc["verdict"] == "AT_RISK"
    assert svc["reasons"] == ["no drill on record (drills are due every 30d)"]
    assert svc["lag"]["lag_seconds"] == 20.0 and len(svc["lag"]["history"]) == 31
    assert svc["targets"]["warning"] == 120.0 and svc["targets"]["critical"] == 240.0


def test_status_exits_0_when_every_service_is_ready(tmp_path, monkeypatch, capsys):
    from datetime import datetime, timedelta, timezone

    from bot.store import create_schema, make_engine, session_scope
    from bot.store.models import ChangeRequest, RequestKind, RequestState, Run

    db = f"sqlite:///{tmp_path}/d.db"
    monkeypatch.setenv("DATABASE_URL", db)
    engine = make_engine(db)
    create_schema(engine)
    now = datetime.now(timezone.utc)
    with session_scope(engine) as s:
        for name in ("orders", "payments"):
            cr = ChangeRequest(kind=RequestKind.DRILL, service=name, requester="UALICE", expires_at=now,
                               state=RequestState.SUCCEEDED)
            s.add(cr)
            s.flush()
            s.add(Run(request_id=cr.id, kind=RequestKind.DRILL, service=name, state=RequestState.SUCCEEDED,
                      approved_at=now - timedelta(days=1), ended_at=now - timedelta(days=1), passed=True,
                      measured_rto_s=300, measured_rpo_s=4))
    engine.dispose()
    assert main(["status", "--config", _write(tmp_path, SANDBOX_CONFIG)]) == 0
    assert capsys.readouterr().out.count("READY") == 2


def test_status_unknown_service_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/d.db")
    assert main(["status", "nope", "--config", _write(tmp_path, SANDBOX_CONFIG)]) == 2
    assert "no service named 'nope'" in capsys.readouterr().err


def test_run_without_credentials_points_at_the_shell(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/d.db")
    for var in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(var, raising=False)
    assert main(["run", "--config", _write(tmp_path, SANDBOX_CONFIG)]) == 2
    assert "drbot shell" in capsys.readouterr().err


def test_shell_runs_the_same_commands_and_switches_users(services):
    out = io.StringIO()
    shell = Shell(services, dispatch, user="alice", out=out)
    stdin = io.StringIO("/dr status\nas bob\nstatus payments\nfrobnicate\nquit\n/dr status\n")
    assert shell.loop(stdin) == 0
    text = out.getvalue()
    assert "acting as alice (UALICE)" in text
    assert "now acting as bob (UBOB)" in text and "bob> status payments" in text
    assert "payments · AT RISK · SANDBOX" in text
    assert "! unknown subcommand 'frobnicate'" in text
    assert text.count("Checked ") == 1  # one summary; nothing runs after quit


def test_demo_config_opens_in_the_shell(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/d.db")
    from bot.wiring import build_services

    services = build_services(str(ROOT / "deploy" / "demo.yaml"))
    out = io.StringIO()
    Shell(services, dispatch, out=out).loop(io.StringIO("/dr status\n"))
    for name in ("orders", "payments", "catalog"):
        assert name in out.getvalue()
    services.engine.dispose()


def test_an_unreachable_database_is_one_sentence_with_the_password_hidden(tmp_path, monkeypatch, capsys):
    """Nothing listens on port 1: every command that needs the database says so in one paragraph,
    exit 2, with the URL it tried (password hidden) and what to check, never a traceback."""
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://drbot:s3cret@127.0.0.1:1/drbot?connect_timeout=2")
    config = _write(tmp_path, SANDBOX_CONFIG)
    for argv in (["status", "--config", config], ["db", "current"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("drbot: cannot use the database at postgresql+psycopg://drbot:***@127.0.0.1:1/drbot"), err
        assert "s3cret" not in err and "Traceback" not in err and "Check DATABASE_URL" in err, err
        assert err.count("\n") == 1, err


def test_the_cli_messenger_forgets_its_oldest_replies_beyond_its_bound():
    """drbot commands outside Slack record replies in memory; an alert storm must not grow it
    without end: beyond 2 x keep entries, the oldest keep are forgotten."""
    m = RecordingMessenger()
    m.keep = 10
    stamps = [m.post("C1", Reply("usage", {"n": i})) for i in range(100)]
    for ts in stamps[-5:]:
        m.update("C1", ts, Reply("usage", {"n": "again"}))
    files = [m.upload("C1", f"f{i}.md", "x" * 1000, "t") for i in range(50)]
    assert len(m.log) <= 20 and len(m.messages) <= 20 and len(m.files) <= 20
    assert m.log[-1][0] == "update" and m.messages[stamps[-1]].context == {"n": "again"}
    assert stamps[0] not in m.messages and len(set(files)) == 50  # ids stay unique after forgetting


def test_alert_notifications_given_up_on_are_listed_and_tried_again(tmp_path, monkeypatch, capsys):
    """A notification the drain gave up on (its cause since fixed) waits again after `drbot
    alerts retry ID` and is processed; an ID that was not given up on is an error."""
    db = f"sqlite:///{tmp_path}/d.db"
    monkeypatch.setenv("DATABASE_URL", db)
    config = _write(tmp_path, SANDBOX_CONFIG)
    services = build_services(parse_config(SANDBOX_CONFIG, "cli.yaml", {}), db_url=db)
    body = {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "ReplicaLag", "service": "orders", "severity": "warning"},
         "annotations": {"summary": "lag high"}, "fingerprint": "f-retry"}]}
    inbox_id = services.inbox.inbox.store("alertmanager", json.dumps(body), read("alertmanager", body, services.config))
    with session_scope(services.engine) as s:  # as the drain leaves it after its last attempt
        s.execute(update(AlertInbox).where(AlertInbox.id == inbox_id).values(state="failed", attempts=5,
                                                                             error="OperationalError: disk full"))
    capsys.readouterr()

    assert main(["alerts", "--config", config]) == 0
    listed = capsys.readouterr().out
    assert "0 notification(s) waiting to be processed; 1 given up on:" in listed
    assert f"{inbox_id}  alertmanager" in listed and "5 attempt(s): OperationalError: disk full" in listed

    assert main(["alerts", "retry", str(inbox_id + 1), "--config", config]) == 2
    assert f"not given up on (unknown, waiting or processed already): {inbox_id + 1}" in capsys.readouterr().err
    assert main(["alerts", "retry", "--config", config]) == 2  # neither IDs nor --all
    assert main(["alerts", "retry", str(inbox_id), "--config", config]) == 0
    assert f"waiting again for the drain: {inbox_id}" in capsys.readouterr().out
    [row] = rows(services, AlertInbox)
    assert (row.state, row.attempts, row.error) == ("pending", 0, "")

    services.inbox.run_until_empty()
    assert rows(services, AlertInbox) == []
    [alert] = rows(services, Alert)
    assert alert.fingerprint.endswith("f-retry") or "f-retry" in alert.fingerprint
    services.engine.dispose()
