"""The wheel, installed into a fresh venv outside the checkout, runs: templates ship as
package data (no DRBOT_TEMPLATES), `drbot --version` reads the package metadata,
`drbot check-config` and `drbot shell` work from a directory that is not the checkout.

No downloads: the wheel is built from a copy of the sources (pip's build isolation uses the
configured local index for setuptools), installed with --no-deps, and the dependencies come
from the project's .venv on PYTHONPATH (a plain directory there: its .pth files, including
the editable install of drbot, are not processed)."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
import venv
from pathlib import Path

import pytest

from transports import serve
from transports.slack.app import SlackSettings, build_app

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["pyproject.toml", "MANIFEST.in", "README.md", "bot", "commands", "integrations", "transports",
           "migrations", "templates"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:  # what deploy/Dockerfile copies: never build inside the shared checkout
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, src / name)
    for junk in src.rglob("__pycache__"):
        shutil.rmtree(junk, ignore_errors=True)
    wheels = base / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("drbot-*.whl")
    target = base / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DRBOT_", "SLACK_", "AWS_")) and k not in ("PYTHONPATH", "DATABASE_URL")}
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]  # the dependencies, not drbot
    env["DATABASE_URL"] = f"sqlite:///{base / 'drbot.db'}"
    outside = base / "elsewhere"
    outside.mkdir()
    return target, env, outside


def _drbot(installed, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    target, env, outside = installed
    return subprocess.run([str(target / "bin" / "drbot"), *args], cwd=outside, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_the_wheel_carries_its_templates_and_uses_the_installed_code(installed):
    target, env, outside = installed
    where = subprocess.run([str(target / "bin" / "python"), "-c",
                            "import bot, bot.render as r; print(bot.__file__); print(r.templates_dir())"],
                           cwd=outside, env=env, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    code, templates = where.stdout.split()
    assert Path(code).is_relative_to(target), code  # the installed copy, not the checkout
    assert Path(templates).is_relative_to(target)
    assert (Path(templates) / "_refusals.j2").is_file()
    assert list((Path(templates) / "blocks").glob("*.json.j2")) and list((Path(templates) / "text").glob("*.txt.j2"))


def test_version_from_the_package_metadata(installed):
    done = _drbot(installed, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "drbot 0.1.0"


def test_check_config_runs_outside_the_checkout(installed, tmp_path):
    config = tmp_path / "drbot.yaml"
    shutil.copy(ROOT / "deploy" / "demo.yaml", config)
    done = _drbot(installed, "check-config", "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(config.read_text().replace("rpo: 5m", "rpo: soon", 1))
    bad = _drbot(installed, "check-config", "--config", str(broken))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"{broken}:" in bad.stderr and "rpo" in bad.stderr


def test_the_shell_runs_the_demo_from_elsewhere(installed, tmp_path):
    config = tmp_path / "demo.yaml"
    shutil.copy(ROOT / "deploy" / "demo.yaml", config)
    done = _drbot(installed, "shell", "--config", str(config),
                  stdin="/dr status\n/dr plan orders\nquit\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "orders" in done.stdout and "payments" in done.stdout
    assert "TemplateNotFound" not in done.stdout + done.stderr


# -- start-up failures: one paragraph, exit 2, no traceback ---------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(services, capsys, api_url: str) -> tuple[int, str]:
    env = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s", "SLACK_API_URL": api_url}
    code = serve.run(services, mode="http", host="127.0.0.1", port=_closed_port(), env=env)
    return code, capsys.readouterr().err


def test_a_token_slack_refuses_stops_the_start_in_one_paragraph(services, fake_slack, capsys):
    fake_slack.outage("auth.test", status=200, error="invalid_auth")
    code, err = _start(services, capsys, fake_slack.base_url)
    assert code == 2
    assert err.startswith("drbot run: Slack refused SLACK_BOT_TOKEN (auth.test: invalid_auth).")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "drbot-outbox" not in {t.name for t in threading.enumerate()}  # nothing was started


def test_slack_in_trouble_is_not_blamed_on_the_token(services, fake_slack, capsys):
    fake_slack.outage("auth.test", status=500, error="internal_error")
    code, err = _start(services, capsys, fake_slack.base_url)
    assert code == 2
    assert err.startswith("drbot run: Slack answered auth.test with HTTP 500 (internal_error)")
    assert "SLACK_BOT_TOKEN" not in err and "Traceback" not in err


def test_unreachable_slack_stops_the_start_in_one_paragraph(services, capsys):
    with socket.socket() as held:  # bound, never listening: connections are refused, no one else gets the port
        held.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{held.getsockname()[1]}/api/"
        code, err = _start(services, capsys, url)
    assert code == 2
    assert err.startswith(f"drbot run: cannot reach Slack at {url} (")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bolt_does_not_warn_that_the_token_is_unused(services, fake_slack, monkeypatch, caplog):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")  # what Bolt reads on its own, as in production
    with caplog.at_level(logging.DEBUG):
        build_app(services, SlackSettings(bot_token="xoxb-test", signing_secret="s", api_url=fake_slack.base_url))
    assert fake_slack.calls("auth.test")  # built for real, token checked
    assert not [r for r in caplog.records if "will be unused" in r.getMessage()]


def test_status_into_a_closed_pipe_prints_no_traceback(tmp_path):
    drbot = Path(sys.executable).parent / "drbot"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'drbot.db'}"}
    done = subprocess.run(f"'{drbot}' status --json --config '{ROOT / 'deploy' / 'demo.yaml'}' | head -c 1",
                          shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout == "{"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
