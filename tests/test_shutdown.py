"""SIGTERM (what Kubernetes, Docker and systemd send) stops ``drbot run`` cleanly: exit 0,
the outbox and the scheduler stopped (logged), and a run in the middle of a step is never
cut mid-step: the step finishes within the grace period and the run is handed over as
interrupted (Resume continues it), or, past the grace period, it is marked interrupted as
after a crash. Real ``python -m transports run --mode http`` processes against the fake
Slack Web API, on SQLite; the hand-over of the scheduler's leadership on PostgreSQL."""
from __future__ import annotations

import json
import signal
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, select

from bot.store import make_engine
from bot.store.models import ChangeRequest, RequestState, Run, RunStep, StepState
from tests.fakes.socket_mode import FakeSocketMode
from tests.helpers import BotProcess, free_port, wait_until
from tests.postgres import temporary_schema

SECRET = "0b7c4e2f9a1d8e6c5b3a2f1e0d9c8b7a"
CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 2.0, action_delay: %s}
watch: {enabled: false}
digest: {enabled: false}
approvals: {required_approvals: 1, approvers: [UBOB]}
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    database: {source: sim}
    runbooks:
      failover:
        - {name: switch writer, action: database.switchover, timeout: 30s}
        - {name: shift traffic, action: traffic.shift, timeout: 30s}
"""


def _bot(tmp_path, fake_slack, action_delay: float, grace: float) -> tuple[BotProcess, str]:
    config = tmp_path / "drbot.yaml"
    config.write_text(CONFIG % action_delay)
    url = f"sqlite:///{tmp_path}/drbot.db"
    bot = BotProcess(tmp_path, "bot", config, url, fake_slack, SECRET, env={"DRBOT_SHUTDOWN_GRACE": str(grace)})
    bot.wait_healthy()
    return bot, url


def _exit_code(bot: BotProcess, timeout: float) -> int:
    return wait_until("the process to exit", lambda: bot.proc.poll() is not None and [bot.proc.returncode],
                      timeout=timeout, details=bot.output)[0]


def test_sigterm_when_idle_exits_0_after_stopping_its_workers(tmp_path, fake_slack):
    bot, _ = _bot(tmp_path, fake_slack, 0, 5)
    with bot:
        started = time.monotonic()
        bot.proc.send_signal(signal.SIGTERM)
        assert _exit_code(bot, 15) == 0, bot.output()
        assert time.monotonic() - started < 10
        out = bot.output()
        for line in ("stopping (SIGTERM)", "outbox worker stopped", "scheduler stopped", "drbot stopped"):
            assert line in out, out


def _failover_running_step_1(bot: BotProcess, url: str, fake_slack) -> tuple[int, object]:
    bot.sender.slash_command("failover orders db down", user_id="UALICE", user_name="alice", channel_id="C1",
                             response_url=fake_slack.response_url())
    engine = make_engine(url)

    def request():
        with Session(engine) as s:
            return s.exec(select(ChangeRequest)).first()

    req = wait_until("the request posted", lambda: (r := request()) is not None and r.message_ts and r)
    bot.sender.block_action("cr_approve", str(req.id), user_id="UBOB", channel_id="C1",
                            message=fake_slack.message("C1", req.message_ts))

    def step_1_running():
        with Session(engine) as s:
            return s.exec(select(RunStep).where(RunStep.position == 0, RunStep.state == StepState.RUNNING)).first()

    wait_until("step 1 running", step_1_running, timeout=15, details=bot.output)
    return req.id, engine


def test_sigterm_during_a_step_lets_it_finish_then_hands_the_run_over(tmp_path, fake_slack):
    bot, url = _bot(tmp_path, fake_slack, 2.0, 20)
    with bot:
        request_id, engine = _failover_running_step_1(bot, url, fake_slack)
        bot.proc.send_signal(signal.SIGTERM)
        assert _exit_code(bot, 30) == 0, bot.output()
        with Session(engine) as s:
            steps = s.exec(select(RunStep).order_by(RunStep.position)).all()
            run = s.exec(select(Run)).one()
            req = s.get(ChangeRequest, request_id)
        # step 1 finished and was recorded; step 2 never started; the run waits for Resume
        assert [(st.position, st.state) for st in steps] == [(0, StepState.SUCCEEDED)]
        assert steps[0].ended_at is not None
        assert run.state is RequestState.INTERRUPTED and req.state is RequestState.INTERRUPTED
        assert "handed over after step 1" in bot.output()
        engine.dispose()


def test_sigterm_past_the_grace_period_marks_the_run_interrupted(tmp_path, fake_slack):
    bot, url = _bot(tmp_path, fake_slack, 6.0, 0.5)
    with bot:
        request_id, engine = _failover_running_step_1(bot, url, fake_slack)
        bot.proc.send_signal(signal.SIGTERM)
        assert _exit_code(bot, 20) == 0, bot.output()
        with Session(engine) as s:
            run = s.exec(select(Run)).one()
            step = s.exec(select(RunStep)).one()
        # recorded as it was: the step started and did not end; the run is interrupted, not failed
        assert run.state is RequestState.INTERRUPTED and step.state is StepState.RUNNING and step.ended_at is None, bot.output()
        assert "still in a step after" in bot.output()
        engine.dispose()


PG_CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 2.0}
watch: {enabled: false}
digest: {enabled: false}
scheduler: {leader_poll: 1s}
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
"""


@pytest.mark.postgres
def test_sigterm_to_the_leader_hands_leadership_to_the_other_replica(tmp_path, fake_slack, pg_url):
    """Two replicas on one PostgreSQL schema: SIGTERM to the leader releases the scheduler's
    lock as it stops, and the other replica leads within seconds (its poll interval)."""
    config = tmp_path / "drbot.yaml"
    config.write_text(PG_CONFIG)
    with temporary_schema(pg_url) as url:
        a = BotProcess(tmp_path, "a", config, url, fake_slack, SECRET, env={"DRBOT_SHUTDOWN_GRACE": "5"})
        with a:
            a.wait_healthy()
            wait_until("a to lead", lambda: "is the leader" in a.output(), timeout=20, details=a.output)
            b = BotProcess(tmp_path, "b", config, url, fake_slack, SECRET)
            with b:
                b.wait_healthy()
                assert "is the leader" not in b.output()
                a.proc.send_signal(signal.SIGTERM)
                assert _exit_code(a, 20) == 0, a.output()
                stopped = time.monotonic()
                wait_until("b to lead", lambda: "is the leader" in b.output(), timeout=10, details=b.output)
                assert time.monotonic() - stopped < 5, "the survivor took too long to lead"
                assert "leadership released" in a.output()


# -- Socket Mode and the metrics port ------------------------------------------------------


def _slash_payload(fake_slack, text: str) -> dict:
    """A slash command as Socket Mode delivers it: the same fields as the HTTP form."""
    return {"token": "unused-in-socket-mode", "team_id": "T0TEST", "team_domain": "drbot-test",
            "channel_id": "C1", "channel_name": "inc-test", "user_id": "UALICE", "user_name": "alice",
            "command": "/dr", "text": text, "api_app_id": "A0TEST", "is_enterprise_install": "false",
            "response_url": fake_slack.response_url("socket"), "trigger_id": "1.2.socket"}


def test_sigterm_in_socket_mode_closes_the_connection_and_exits_0(tmp_path, fake_slack):
    """Socket Mode end to end: the app opens its connection through apps.connections.open,
    answers a slash command sent over the socket (ack, then the reply at response_url), and
    on SIGTERM closes the connection, stops its workers and exits 0."""
    config = tmp_path / "drbot.yaml"
    config.write_text(CONFIG % 0)
    with FakeSocketMode() as socket_peer:
        fake_slack.socket_url = socket_peer.url
        bot = BotProcess(tmp_path, "socket", config, f"sqlite:///{tmp_path}/drbot.db", fake_slack, SECRET,
                         env={"SLACK_APP_TOKEN": "xapp-test", "DRBOT_SHUTDOWN_GRACE": "5"}, mode="socket")
        with bot:
            bot.wait_healthy()
            wait_until("the Socket Mode connection", lambda: socket_peer.open == 1, timeout=15, details=bot.output)
            ready = wait_until("/readyz to say connected",
                               lambda: (r := httpx.get(bot.url + "/readyz", timeout=2)).status_code == 200 and r.json())
            assert ready["slack"] == "connected"
            assert httpx.post(bot.url + "/slack/events", content=b"{}").status_code == 404  # not in Socket Mode
            ack = socket_peer.wait_ack(socket_peer.send("slash_commands", _slash_payload(fake_slack, "help")))
            assert set(ack) >= {"envelope_id"}
            (reply,) = fake_slack.wait_for("response_url", 1, timeout=10)
            assert "/dr status" in json.dumps(reply.params), reply.params

            bot.proc.send_signal(signal.SIGTERM)
            assert _exit_code(bot, 15) == 0, bot.output()
            wait_until("the connection closed by the app", lambda: socket_peer.open == 0, timeout=5)
            assert socket_peer.connections == 1  # closed for good, not reconnected on the way out
            out = bot.output()
            for line in ("stopping (SIGTERM)", "outbox worker stopped", "scheduler stopped", "drbot stopped"):
                assert line in out, out


def test_socket_mode_with_a_refused_app_token_exits_2_with_a_sentence(tmp_path, fake_slack):
    config = tmp_path / "drbot.yaml"
    config.write_text(CONFIG % 0)
    fake_slack.socket_url = None  # apps.connections.open answers invalid_auth
    bot = BotProcess(tmp_path, "socket", config, f"sqlite:///{tmp_path}/drbot.db", fake_slack, SECRET,
                     env={"SLACK_APP_TOKEN": "xapp-wrong"}, mode="socket")
    with bot:
        assert _exit_code(bot, 20) == 2, bot.output()
        out = bot.output()
        assert "Slack refused SLACK_APP_TOKEN (apps.connections.open: invalid_auth)" in out, out
        assert "App-Level Tokens" in out and "Traceback" not in out, out


def test_metrics_port_serves_metrics_apart_from_the_public_port(tmp_path, fake_slack):
    """With --metrics-port, /metrics is served there only: the port that faces Slack and the
    alert senders answers 404 for it. SIGTERM stops both servers."""
    config = tmp_path / "drbot.yaml"
    config.write_text(CONFIG % 0)
    metrics_port = free_port()
    bot = BotProcess(tmp_path, "bot", config, f"sqlite:///{tmp_path}/drbot.db", fake_slack, SECRET,
                     args=("--metrics-port", str(metrics_port)))
    with bot:
        bot.wait_healthy()
        assert httpx.get(bot.url + "/metrics", timeout=2).status_code == 404
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert scraped.status_code == 200
        families = {f.name for f in text_string_to_metric_families(scraped.text)}
        assert {"drbot_requests", "drbot_outbox_depth"} <= families, sorted(families)
        bot.proc.send_signal(signal.SIGTERM)
        assert _exit_code(bot, 15) == 0, bot.output()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)


WAITING = CONFIG.replace("""        - {name: switch writer, action: database.switchover, timeout: 30s}
""", """        - {name: hold for the standby, action: wait, timeout: 5m, wait: {duration: 2m}}
""")


def test_a_step_still_waiting_past_the_grace_period_is_cancelled_and_resumable(tmp_path, fake_slack):
    """A step that polls (a wait here; an Argo workflow or an SSM execution alike) is told to
    stop when the grace period has passed: it ends at once, recorded as stopped, and its run
    is interrupted, not failed: Resume runs that step again."""
    config = tmp_path / "drbot.yaml"
    config.write_text(WAITING % 0)
    url = f"sqlite:///{tmp_path}/drbot.db"
    bot = BotProcess(tmp_path, "bot", config, url, fake_slack, SECRET, env={"DRBOT_SHUTDOWN_GRACE": "0.5"})
    with bot:
        bot.wait_healthy()
        request_id, engine = _failover_running_step_1(bot, url, fake_slack)
        stopped = time.monotonic()
        bot.proc.send_signal(signal.SIGTERM)
        assert _exit_code(bot, 15) == 0, bot.output()
        assert time.monotonic() - stopped < 6  # the grace period, then the step's cancel: not its 2 minutes
        with Session(engine) as s:
            run = s.exec(select(Run)).one()
            [step] = s.exec(select(RunStep)).all()
            req = s.get(ChangeRequest, request_id)
        assert step.state is StepState.FAILED and step.ended_at is not None, bot.output()
        assert run.state is RequestState.INTERRUPTED and req.state is RequestState.INTERRUPTED, bot.output()
        assert "handed over after step 1" in bot.output()
        engine.dispose()
