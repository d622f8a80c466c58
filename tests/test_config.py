"""The config loader: a bad file fails with the path of the field, the line where the YAML
has one, and a human sentence; every problem at once where it can."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from transports.cli import EXIT_BAD_CONFIG, EXIT_OK, main
from bot.config import ConfigError, load_config, parse_config
from bot.config.loader import Problem, format_loc

REPO = Path(__file__).resolve().parent.parent
FILE = "drbot.yaml"

BASE = """\
regions: [us-east-1, us-west-2]
sources:
  demo:
    kind: sandbox
  probe:
    kind: http_probe
    url: https://orders.example.com/healthz
services:
  - name: orders
    tier: critical
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: demo}
    health: {us-east-1: demo, us-west-2: probe}
  - name: payments
    rpo: 5m
    rto: 30m
    active: us-east-1
    standby: us-west-2
    lag:
      source: demo
      warning: 2m
      critical: 4m
approvals:
  required_approvals: 1
  approvers: [U0ALICE01, S0DRTEAM1]
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """1-based line number of the only line that contains ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def fail(text: str, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        parse_config(text, FILE, environ or {})
    assert err.value.problems, "a ConfigError always lists at least one problem"
    return err.value


def only(err: ConfigError) -> Problem:
    assert len(err.problems) == 1, err.render()
    return err.problems[0]


def by_path(err: ConfigError) -> dict[str, list[Problem]]:
    out: dict[str, list[Problem]] = {}
    for p in err.problems:
        out.setdefault(p.path, []).append(p)
    return out


# -- a good file ---------------------------------------------------------------------------

def test_base_config_is_valid():
    loaded = parse_config(BASE, FILE, {})
    cfg = loaded.config
    assert loaded.path == FILE
    assert cfg.regions == ["us-east-1", "us-west-2"]
    assert cfg.service_names == ["orders", "payments"]
    orders = cfg.service("orders")
    assert orders.rpo == timedelta(minutes=5) and orders.rto == timedelta(minutes=15)
    assert orders.tier == "critical"
    assert cfg.service("nope") is None
    assert set(loaded.options) == {"demo", "probe"}
    assert loaded.options["probe"].url == "https://orders.example.com/healthz"
    assert cfg.approvals.approvers == ["U0ALICE01", "S0DRTEAM1"]


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("1h", 3600), ("30d", 30 * 86400)])
def test_durations_in_config(text, seconds):
    cfg = parse_config(edit("    rto: 15m\n", f"    rto: 15m\n    drill_max_age: {text}\n"), FILE, {}).config
    assert cfg.services[0].drill_max_age == timedelta(seconds=seconds)


def test_default_thresholds_are_40_and_80_percent_of_the_rpo():
    cfg = parse_config(edit("    rpo: 5m\n    rto: 15m", "    rpo: 1h\n    rto: 15m"), FILE, {}).config
    assert cfg.service("orders").thresholds() == (timedelta(minutes=24), timedelta(minutes=48))
    assert cfg.service("payments").thresholds() == (timedelta(minutes=2), timedelta(minutes=4))


def test_one_explicit_threshold_keeps_the_other_default():
    cfg = parse_config(edit("      warning: 2m\n", ""), FILE, {}).config
    assert cfg.service("payments").thresholds() == (timedelta(minutes=2), timedelta(minutes=4))
    cfg = parse_config(edit("      warning: 2m\n", "      warning: 1m\n").replace("      critical: 4m\n", ""),
                       FILE, {}).config
    assert cfg.service("payments").thresholds() == (timedelta(minutes=1), timedelta(minutes=4))


def test_default_stale_after_and_drill_max_age():
    svc = parse_config(BASE, FILE, {}).config.service("orders")
    assert svc.lag.stale_after == timedelta(minutes=10)
    assert svc.drill_max_age == timedelta(days=30)


# -- the error format ----------------------------------------------------------------------

def test_bad_duration_exact_sentence_and_line():
    text = edit("      warning: 2m\n", "      warning: 5 minutes\n")
    err = fail(text)
    problem = only(err)
    assert problem.loc == ("services", 1, "lag", "warning")
    assert problem.line == 24 == line_of(text, "warning: 5 minutes")
    assert problem.message == "'5 minutes' is not a duration (use 5m)"
    assert err.render() == "drbot.yaml:24: services[1].lag.warning: '5 minutes' is not a duration (use 5m)"
    assert str(err) == err.render()


def test_bare_number_duration_says_to_add_a_unit():
    text = edit("    rpo: 5m\n    rto: 15m", "    rpo: 300\n    rto: 15m")
    problem = only(fail(text))
    assert problem.path == "services[0].rpo"
    assert problem.message == "300 has no unit (use 300s or 300m)"
    assert problem.line == line_of(text, "rpo: 300")


def test_format_loc():
    assert format_loc(()) == ""
    assert format_loc(("services", 1, "lag", "warning")) == "services[1].lag.warning"
    assert format_loc(("sources", "demo", "profiles", "orders")) == "sources.demo.profiles.orders"


# -- unknown keys --------------------------------------------------------------------------

def test_unknown_top_level_key_with_hint():
    text = BASE + "slak:\n  command: /dr\n"
    problem = only(fail(text))
    assert (problem.path, problem.line) == ("slak", line_of(text, "slak:"))
    assert problem.message == "unknown key (did you mean 'slack'?)"


def test_unknown_service_key_with_hint():
    text = edit("    tier: critical\n", "    tier: critical\n    drill_max_ag: 30d\n")
    problem = only(fail(text))
    assert problem.path == "services[0].drill_max_ag"
    assert problem.message == "unknown key (did you mean 'drill_max_age'?)"
    assert problem.line == line_of(text, "drill_max_ag:")


def test_unknown_lag_key_with_hint():
    text = edit("      critical: 4m\n", "      critcal: 4m\n")
    problem = only(fail(text))
    assert problem.path == "services[1].lag.critcal"
    assert problem.message == "unknown key (did you mean 'critical'?)"
    assert problem.line == line_of(text, "critcal")


def test_unknown_key_without_a_close_match_lists_the_allowed_keys():
    text = edit("      critical: 4m\n", "      critical: 4m\n      zzz: 1\n")
    problem = only(fail(text))
    assert problem.path == "services[1].lag.zzz"
    assert problem.message == "unknown key (allowed: critical, source, stale_after, target, warning)"


def test_unknown_approvals_key():
    text = edit("  required_approvals: 1\n", "  required_aprovals: 1\n")
    problem = only(fail(text))
    assert problem.path == "approvals.required_aprovals"
    assert problem.message == "unknown key (did you mean 'required_approvals'?)"
    assert problem.line == line_of(text, "required_aprovals")


def test_unknown_source_option_is_checked_by_the_backend_options_model():
    text = edit("    kind: sandbox\n", "    kind: sandbox\n    profils: {}\n")
    problem = only(fail(text))
    assert problem.path == "sources.demo.profils"
    assert problem.message == "unknown key (did you mean 'profiles'?)"
    assert problem.line == line_of(text, "profils")


def test_unknown_nested_source_option_names_the_nested_path():
    text = edit("    kind: sandbox\n", "    kind: sandbox\n    profiles:\n      orders:\n        lagg: 20\n")
    problem = only(fail(text))
    assert problem.path == "sources.demo.profiles.orders.lagg"
    assert problem.message == "unknown key (did you mean 'lag'?)"
    assert problem.line == line_of(text, "lagg: 20")


def test_bad_source_option_value():
    text = edit("    url: https://orders.example.com/healthz\n", "    url: orders.example.com/healthz\n")
    problem = only(fail(text))
    assert problem.path == "sources.probe.url"
    assert problem.message.startswith("url must") and "http://" in problem.message  # the backend's own sentence
    assert problem.line == line_of(text, "url: orders")


def test_source_missing_a_required_option():
    text = edit("    url: https://orders.example.com/healthz\n", "")
    problem = only(fail(text))
    assert problem.path == "sources.probe.url"
    assert problem.message == "is required but missing"
    assert problem.line == line_of(text, "probe:")  # the nearest place the YAML has


# -- ${ENV} secrets ------------------------------------------------------------------------

ENV_TEXT = edit("    url: https://orders.example.com/healthz\n",
                "    url: ${PROBE_URL}\n    headers: {Authorization: 'Bearer ${PROBE_TOKEN}'}\n")


def test_env_vars_are_substituted():
    loaded = parse_config(ENV_TEXT, FILE, {"PROBE_URL": "https://h.example/ok", "PROBE_TOKEN": "s3cret"})
    opts = loaded.options["probe"]
    assert opts.url == "https://h.example/ok"
    assert opts.headers == {"Authorization": "Bearer s3cret"}


def test_missing_env_var_is_an_error_naming_it():
    err = fail(ENV_TEXT, {"PROBE_URL": "https://h.example/ok"})
    problem = only(err)
    assert problem.path == "sources.probe.headers.Authorization"
    assert "PROBE_TOKEN" in problem.message
    assert problem.message == ("environment variable PROBE_TOKEN is not set "
                               "(export it, or write ${PROBE_TOKEN:-default})")
    assert problem.line == line_of(ENV_TEXT, "PROBE_TOKEN")
    assert "s3cret" not in err.render()


def test_each_missing_env_var_is_named():
    err = fail(ENV_TEXT, {})
    messages = "\n".join(p.message for p in err.problems)
    assert "environment variable PROBE_URL is not set" in messages
    assert "environment variable PROBE_TOKEN is not set" in messages
    assert "sources.probe.url" in by_path(err)


def test_env_default_is_used_when_the_variable_is_unset():
    text = ENV_TEXT.replace("${PROBE_URL}", "${PROBE_URL:-https://default.example/h}")
    loaded = parse_config(text, FILE, {"PROBE_TOKEN": "t"})
    assert loaded.options["probe"].url == "https://default.example/h"
    loaded = parse_config(text, FILE, {"PROBE_TOKEN": "t", "PROBE_URL": "https://set.example/h"})
    assert loaded.options["probe"].url == "https://set.example/h"


def test_env_default_may_be_empty_and_set_empty_wins_over_default():
    text = ENV_TEXT.replace("Bearer ${PROBE_TOKEN}", "Bearer ${PROBE_TOKEN:-}")
    loaded = parse_config(text, FILE, {"PROBE_URL": "https://h.example/ok"})
    assert loaded.options["probe"].headers == {"Authorization": "Bearer "}
    text = ENV_TEXT.replace("${PROBE_URL}", "${PROBE_URL:-https://default.example/h}")
    with pytest.raises(ConfigError, match=r"sources\.probe\.url: url must"):
        parse_config(text, FILE, {"PROBE_URL": "", "PROBE_TOKEN": "t"})


def test_env_var_in_a_typed_field():
    text = edit("    rpo: 5m\n    rto: 15m", "    rpo: ${ORDERS_RPO}\n    rto: 15m")
    assert parse_config(text, FILE, {"ORDERS_RPO": "10m"}).config.service("orders").rpo == timedelta(minutes=10)


def test_parse_config_does_not_read_the_real_environment_when_given_one(monkeypatch):
    monkeypatch.setenv("PROBE_URL", "https://from-os.example/h")
    monkeypatch.setenv("PROBE_TOKEN", "from-os")
    err = fail(ENV_TEXT, {})
    assert {"sources.probe.url", "sources.probe.headers.Authorization"} <= set(by_path(err))


# -- kinds, types, required fields ---------------------------------------------------------

def test_unknown_kind_with_suggestion():
    text = edit("    kind: sandbox\n", "    kind: sandbocks\n")
    problem = only(fail(text))
    assert problem.path == "sources.demo.kind"
    assert problem.message == "unknown kind 'sandbocks' (did you mean 'sandbox'?)"
    assert problem.line == line_of(text, "sandbocks")


def test_unknown_kind_without_a_close_match_lists_the_known_kinds():
    problem = only(fail(edit("    kind: sandbox\n", "    kind: zzzzzz\n")))
    assert problem.message.startswith("unknown kind 'zzzzzz' (known: ")
    assert "sandbox" in problem.message and "http_probe" in problem.message


def test_source_without_kind():
    text = edit("    kind: sandbox\n", "    profiles: {}\n")
    problem = only(fail(text))
    assert (problem.path, problem.message) == ("sources.demo.kind", "is required but missing")


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        ("    rpo: 5m\n    rto: 15m", "    rpo: [1]\n    rto: 15m", "services[0].rpo", "[1] is not a duration (use 5m)"),
        ("regions: [us-east-1, us-west-2]", "regions: 5", "regions", "5 is not a list"),
        ("  required_approvals: 1\n", '  required_approvals: "two"\n', "approvals.required_approvals",
         "'two' is not a whole number"),
        ("    tier: critical\n", "    tier: urgent\n", "services[0].tier",
         "'urgent' is not one of: 'critical', 'high', 'medium' or 'low'"),
        ("  - name: orders\n", "  - name: Orders\n", "services[0].name",
         "'Orders' is not a valid name (lower-case letters, digits, '-' and '_'; must start with a letter or digit)"),
        ("    health: {us-east-1: demo, us-west-2: probe}\n", "    health: [demo]\n", "services[0].health",
         "['demo'] is not a mapping"),
    ],
    ids=["rpo-list", "regions-int", "approvals-text", "tier", "name", "health-list"],
)
def test_wrong_type(old, new, path, message):
    text = edit(old, new)
    problem = only(fail(text))
    assert (problem.path, problem.message) == (path, message)
    assert problem.line == line_of(text, new.strip().split("\n")[0])


def test_missing_required_field():
    text = edit("    rto: 15m\n", "")
    problem = only(fail(text))
    assert problem.path == "services[0].rto"
    assert problem.message == "is required but missing"
    assert problem.line == line_of(text, "- name: orders")  # the service it is missing from


def test_missing_services():
    text = BASE.split("services:")[0]
    problem = only(fail(text))
    assert (problem.path, problem.message) == ("services", "is required but missing")
    assert problem.line is None  # nowhere in the file to point at
    assert fail(text).render() == "drbot.yaml: services: is required but missing"


def test_a_single_region_is_not_enough():
    problem = only(fail(edit("regions: [us-east-1, us-west-2]", "regions: [us-east-1]")))
    assert problem.path == "regions"
    assert "at least 2" in problem.message


# -- cross-references ----------------------------------------------------------------------

def test_active_region_not_in_regions():
    text = edit("    active: us-east-1\n    standby: us-west-2\n    lag: {",
                "    active: eu-west-1\n    standby: us-west-2\n    lag: {")
    err = fail(text)
    problems = by_path(err)["services[0].active"]
    assert [p.message for p in problems] == ["'eu-west-1' is not one of the regions (us-east-1, us-west-2)"]
    assert problems[0].line == line_of(text, "active: eu-west-1")


def test_active_equal_to_standby():
    text = edit("    active: us-east-1\n    standby: us-west-2\n    lag:\n",
                "    active: us-east-1\n    standby: us-east-1\n    lag:\n")
    problem = only(fail(text))
    assert problem.path == "services[1].standby"
    assert problem.message == "standby must differ from the active region"
    assert problem.line == 21 == line_of(text, "standby: us-east-1")


def test_lag_source_that_does_not_exist():
    text = edit("      source: demo\n", "      source: dmeo\n")
    problem = only(fail(text))
    assert problem.path == "services[1].lag.source"
    assert problem.message == "no source named 'dmeo' (did you mean 'demo'?)"
    assert problem.line == line_of(text, "source: dmeo")


def test_http_probe_cannot_serve_lag():
    text = edit("      source: demo\n", "      source: probe\n")
    problem = only(fail(text))
    assert problem.path == "services[1].lag.source"
    assert problem.message == "source 'probe' (kind http_probe) cannot serve as a lag source"


def test_health_region_that_is_not_the_services():
    text = edit("    health: {us-east-1: demo, us-west-2: probe}\n",
                "    health: {us-east-1: demo, us-west-2: probe, eu-west-1: demo}\n")
    text = edit("regions: [us-east-1, us-west-2]", "regions: [us-east-1, us-west-2, eu-west-1]", text)
    problem = only(fail(text))
    assert problem.path == "services[0].health.eu-west-1"
    assert problem.message == "'eu-west-1' is neither the active nor the standby region of orders"
    assert problem.line == line_of(text, "eu-west-1: demo")


def test_health_source_that_does_not_exist():
    problem = only(fail(edit("us-west-2: probe}", "us-west-2: prbe}")))
    assert problem.path == "services[0].health.us-west-2"
    assert problem.message == "no source named 'prbe' (did you mean 'probe'?)"


def test_duplicate_service_names():
    text = edit("  - name: payments\n", "  - name: orders\n")
    problem = only(fail(text))
    assert problem.path == "services[1].name"
    assert problem.message == "service 'orders' is defined twice"
    assert problem.line == 17


@pytest.mark.parametrize(("warning", "critical"), [("4m", "4m"), ("4m30s", "4m")])
def test_warning_must_be_below_critical(warning, critical):
    text = edit("      warning: 2m\n      critical: 4m\n", f"      warning: {warning}\n      critical: {critical}\n")
    problem = only(fail(text))
    assert problem.path == "services[1].lag.warning"
    assert problem.message == "warning must be below critical"
    assert problem.line == line_of(text, f"warning: {warning}")


def test_explicit_warning_above_the_default_critical():
    text = edit("      warning: 2m\n      critical: 4m\n", "      warning: 4m30s\n")  # default critical 4m
    assert only(fail(text)).message == "warning must be below critical"


def test_critical_above_the_rpo_loads_with_a_warning():
    """Alerting at 2x the RPO can be written (issue 14); it is said at load, never silent."""
    text = edit("      critical: 4m\n", "      critical: 6m\n")
    loaded = parse_config(text, FILE, {})
    assert loaded.config.service("payments").thresholds()[1] == timedelta(minutes=6)
    [note] = [n for n in loaded.notes if n.path == "services[1].lag.critical"]
    assert note.message.startswith("WARNING: critical 6m is above the RPO of 5m")
    assert note.line == line_of(text, "critical: 6m")


def test_critical_equal_to_the_rpo_is_allowed():
    cfg = parse_config(edit("      critical: 4m\n", "      critical: 5m\n"), FILE, {}).config
    assert cfg.service("payments").thresholds()[1] == timedelta(minutes=5)


# -- approvers -----------------------------------------------------------------------------

SLACK_ID_HINT = "is not a Slack user or user-group ID (use U0123ABCD for a person, S0123ABCD for a user group)"


def test_approver_that_is_not_a_slack_id():
    text = edit("  approvers: [U0ALICE01, S0DRTEAM1]\n", "  approvers:\n    - U0ALICE01\n    - alice\n")
    problem = only(fail(text))
    assert problem.path == "approvals.approvers[1]"
    assert problem.message == f"'alice' {SLACK_ID_HINT}"
    assert problem.line == line_of(text, "- alice")


@pytest.mark.parametrize("bad", ["@alice", "u0alice01", "C0CHANNEL1", "<@U0ALICE01>", "U"])
def test_requester_ids_are_checked(bad):
    problem = only(fail(BASE + f"  requesters: ['{bad}']\n"))
    assert problem.path == "approvals.requesters[0]"
    assert problem.message == f"{bad!r} {SLACK_ID_HINT}"


def test_per_service_approvers_and_break_glass_group_are_checked():
    text = edit("    tier: critical\n",
                "    tier: critical\n    approvals: {approvers: [bob], break_glass: {group: [S0OK1, oncall]}}\n")
    err = fail(text)
    assert {p.path: p.message for p in err.problems} == {
        "services[0].approvals.approvers[0]": f"'bob' {SLACK_ID_HINT}",
        "services[0].approvals.break_glass.group[1]": f"'oncall' {SLACK_ID_HINT}",
    }


def test_valid_slack_ids_are_accepted():
    cfg = parse_config(BASE + "  requesters: [U0BOB0002, W0ENT0001, S0SRE0001]\n", FILE, {}).config
    assert cfg.approvals.requesters == ["U0BOB0002", "W0ENT0001", "S0SRE0001"]


# -- not YAML, not a mapping ---------------------------------------------------------------

@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "", "42\n"])
def test_not_a_mapping(text):
    problem = only(fail(text))
    assert problem.loc == ()
    assert problem.message == "the file must be a YAML mapping with regions, sources and services"
    assert fail(text).render() == f"{FILE}: the file must be a YAML mapping with regions, sources and services"


def test_invalid_yaml_reports_the_line():
    text = edit("    rto: 15m\n", "    rto: 15m\n   bad: [\n")
    err = fail(text)
    problem = only(err)
    assert problem.message.startswith("not valid YAML: ")
    assert problem.line is not None and problem.line >= line_of(text, "bad: [")
    assert err.render().startswith(f"{FILE}:{problem.line}: not valid YAML: ")


def test_invalid_yaml_indentation_line():
    text = "regions: [a, b]\nservices:\n  - name: x\n   rpo: 5m\n"
    problem = only(fail(text))
    assert problem.message.startswith("not valid YAML:")
    assert problem.line == 4


# -- several problems at once --------------------------------------------------------------

def test_several_model_problems_are_reported_at_once():
    text = edit("      warning: 2m\n", "      warning: 5 minutes\n")
    text = edit("    tier: critical\n", "    tierr: critical\n", text)
    text = edit("    rto: 30m\n", "", text)
    text = edit("  required_approvals: 1\n", "  required_approvals: two\n", text)
    err = fail(text)
    got = {p.path: (p.line, p.message) for p in err.problems}
    assert got == {
        "services[0].tierr": (line_of(text, "tierr"), "unknown key (did you mean 'tier'?)"),
        "services[1].rto": (line_of(text, "- name: payments"), "is required but missing"),
        "services[1].lag.warning": (line_of(text, "5 minutes"), "'5 minutes' is not a duration (use 5m)"),
        "approvals.required_approvals": (line_of(text, "required_approvals"), "'two' is not a whole number"),
    }
    rendered = err.render().splitlines()
    assert len(rendered) == 4
    assert f"drbot.yaml:{line_of(text, '5 minutes')}: services[1].lag.warning: '5 minutes' is not a duration (use 5m)" \
        in rendered


def test_several_reference_problems_are_reported_at_once():
    text = edit("      source: demo\n", "      source: probe\n")
    text = edit("  - name: payments\n", "  - name: orders\n", text)
    text = edit("    kind: http_probe\n    url: https://orders.example.com/healthz\n",
                "    kind: http_probe\n    url: https://orders.example.com/healthz\n  extra:\n    kind: sandbx\n",
                text)
    err = fail(text)
    assert set(by_path(err)) == {"services[1].name", "services[1].lag.source", "sources.extra.kind"}


def test_missing_env_var_is_reported_with_model_problems():
    text = edit("      warning: 2m\n", "      warning: 5 minutes\n", ENV_TEXT)
    err = fail(text, {"PROBE_URL": "https://h.example/ok"})
    assert set(by_path(err)) == {"sources.probe.headers.Authorization", "services[1].lag.warning"}


# -- load_config ---------------------------------------------------------------------------

def test_load_config_reads_a_file(tmp_path):
    path = tmp_path / "drbot.yaml"
    path.write_text(ENV_TEXT)
    loaded = load_config(path, {"PROBE_URL": "https://h.example/ok", "PROBE_TOKEN": "t"})
    assert loaded.path == str(path)
    assert loaded.config.service_names == ["orders", "payments"]
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert err.value.render().startswith(f"{path}:")


def test_load_config_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert err.value.render().startswith(f"{path}: file not found")


def test_demo_config_is_valid_with_an_empty_environment():
    loaded = load_config(REPO / "deploy" / "demo.yaml", {})
    assert loaded.config.service_names == ["orders", "payments", "catalog"]
    assert {spec.kind for spec in loaded.config.sources.values()} == {"sandbox"}


# -- drbot check-config --------------------------------------------------------------------

@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.delenv("DRBOT_CONFIG", raising=False)
    monkeypatch.delenv("PROBE_TOKEN", raising=False)
    monkeypatch.delenv("PROBE_URL", raising=False)
    return tmp_path


def test_check_config_on_a_broken_file_exits_2_with_located_messages(cli_env, capsys):
    text = edit("      warning: 2m\n", "      warning: 5 minutes\n")
    text = edit("    tier: critical\n", "    tierr: critical\n", text)
    path = cli_env / "broken.yaml"
    path.write_text(text)
    assert main(["check-config", "--config", str(path)]) == EXIT_BAD_CONFIG == 2
    out, err = capsys.readouterr()
    assert f"{path}:24: services[1].lag.warning: '5 minutes' is not a duration (use 5m)" in err
    assert f"{path}:{line_of(text, 'tierr')}: services[0].tierr: unknown key (did you mean 'tier'?)" in err
    assert "valid" not in out


def test_check_config_on_a_missing_env_var_exits_2(cli_env, capsys):
    path = cli_env / "env.yaml"
    path.write_text(ENV_TEXT.replace("${PROBE_URL}", "${PROBE_URL:-https://h.example/ok}"))
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "sources.probe.headers.Authorization: environment variable PROBE_TOKEN is not set" in err


def test_check_config_on_invalid_yaml_exits_2(cli_env, capsys):
    path = cli_env / "bad.yaml"
    path.write_text("regions: [a, b\n")
    assert main(["check-config", "--config", str(path)]) == 2
    assert f"{path}:2: not valid YAML" in capsys.readouterr().err


def test_check_config_on_a_missing_file_exits_2(cli_env, capsys):
    path = cli_env / "absent.yaml"
    assert main(["check-config", "--config", str(path)]) == 2
    assert f"{path}: file not found" in capsys.readouterr().err


def test_check_config_uses_drbot_config_from_the_environment(cli_env, monkeypatch, capsys):
    path = cli_env / "from-env.yaml"
    path.write_text("- not a mapping\n")
    monkeypatch.setenv("DRBOT_CONFIG", str(path))
    assert main(["check-config"]) == 2
    assert f"{path}: the file must be a YAML mapping" in capsys.readouterr().err


def test_check_config_on_the_demo_exits_0(cli_env, capsys):
    demo = REPO / "deploy" / "demo.yaml"
    assert main(["check-config", "--config", str(demo)]) == EXIT_OK == 0
    out, err = capsys.readouterr()
    assert f"{demo}: valid (3 services, 1 sources, regions us-east-1, us-west-2)" in out
    assert "ok   demo (sandbox): SANDBOX" in out
    assert "all sources answered" in out
    assert "FAIL" not in out


# -- every problem of a file in one run ---------------------------------------------------

FOUR_ERRORS = edit("  - name: payments\n    rpo: 5m", "  - name: payments\n    rpo: soon",          # a bad value
                   edit("  required_approvals: 1", "  required_approvals: 0",                        # another
                        edit("    kind: http_probe", "    kind: http_prob",                          # a source
                             edit("lag: {source: demo}", "lag: {source: dmeo}"))))                   # a reference


def test_a_file_with_four_errors_reports_four():
    err = fail(FOUR_ERRORS)
    assert len(err.problems) == 4, err.render()
    paths = by_path(err)
    assert set(paths) == {"services[1].rpo", "approvals.required_approvals", "sources.probe.kind",
                          "services[0].lag.source"}
    assert paths["services[1].rpo"][0].line == line_of(FOUR_ERRORS, "rpo: soon")
    assert paths["approvals.required_approvals"][0].line == line_of(FOUR_ERRORS, "required_approvals: 0")
    assert paths["sources.probe.kind"][0].message == "unknown kind 'http_prob' (did you mean 'http_probe'?)"
    assert paths["services[0].lag.source"][0].message == "no source named 'dmeo' (did you mean 'demo'?)"
    assert paths["services[0].lag.source"][0].line == line_of(FOUR_ERRORS, "dmeo")
    assert [p.line for p in err.problems] == sorted(p.line for p in err.problems)  # in the file's order


def test_references_of_a_service_after_a_broken_one_keep_their_index():
    text = edit("  - name: orders\n    tier: critical", "  - name: orders\n    tier: urgent",
                edit("      source: demo\n      warning: 2m", "      source: nowhere\n      warning: 2m"))
    paths = by_path(fail(text))
    assert set(paths) == {"services[0].tier", "services[1].lag.source"}, paths
    assert paths["services[1].lag.source"][0].line == line_of(text, "nowhere")


def test_a_broken_source_spec_does_not_also_make_its_references_unknown():
    text = edit("    url: https://orders.example.com/healthz", "    url: https://orders.example.com/healthz\n    retries: many",
                edit("  required_approvals: 1", "  required_approvals: many"))
    paths = by_path(fail(text))
    assert set(paths) == {"sources.probe.retries", "approvals.required_approvals"}, paths


def test_a_missing_env_var_in_a_typed_field_is_one_sentence_of_drbot():
    text = edit("    rpo: 5m\n    rto: 15m", "    rpo: ${ORDERS_RPO}\n    rto: 15m",
                edit("    url: https://orders.example.com/healthz", "    url: ${PROBE_URL}"))
    err = fail(text)
    assert [(p.path, p.message) for p in err.problems] == [
        ("sources.probe.url", "environment variable PROBE_URL is not set (export it, or write ${PROBE_URL:-default})"),
        ("services[0].rpo", "environment variable ORDERS_RPO is not set (export it, or write ${ORDERS_RPO:-default})"),
    ]


def test_check_config_prints_every_problem_with_file_and_line(tmp_path, capsys):
    path = tmp_path / "drbot.yaml"
    path.write_text(FOUR_ERRORS)
    assert main(["check-config", "--config", str(path)]) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"{path}:")]
    assert len(lines) == 4, err
    assert f"{path}:{line_of(FOUR_ERRORS, 'dmeo')}: services[0].lag.source: no source named 'dmeo'" in err
    assert "Traceback" not in err and "Input should" not in err
