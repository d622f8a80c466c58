"""docs/config.md cannot drift from the config model: every key of the model (bot/config
models, nested models, each backend's Options) is documented, and every documented key exists.

The docs' convention, read here: each section's "| Key | ..." tables document keys relative
to the part of the model that section is about (SECTIONS below); a table introduced by a
line "`lag`:" or "`slack_rules` items:" documents the keys under that key (items: of each
item of that list); an upper-case part of a key (`profiles.SERVICE.lag`) stands for any name, `[]` for each item
of a list (`open_on[].service`);
a row whose type is `{source: NAME}` documents that mapping's `source` key."""
from __future__ import annotations

import ast
import json
import re
import types
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel

from bot.config.models import Config
from integrations import registry

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "config.md"
ANY = "*"
STEP = ("services", ANY, "runbooks", "failover", ANY)

SECTIONS: dict[str, tuple[str, ...]] = {
    "Top level": (),
    "`services`": ("services", ANY),
    "`runbooks`": ("services", ANY, "runbooks"),
    "Steps": STEP,
    "verify": STEP + ("verify",),
    "rollback": STEP + ("rollback",),
    "`approvals`": ("approvals",),
    "`permissions`": ("permissions",),
    "`slack`": ("slack",),
    "`alerts`": ("alerts",),
    "`incidents`": ("incidents",),
    "`statuspage`": ("statuspage",),
    "`paging`": ("paging",),
    "`services[].drills`: scheduled drills": ("services", ANY, "drills", ANY),
    "`evacuation.drills`: scheduled region drills": ("evacuation", "drills", ANY),
    "`watch`": ("watch",),
    "`digest`": ("digest",),
    "`scheduler`": ("scheduler",),
    "`evacuation`": ("evacuation",),
}
"""Heading (without the #s) -> where in the model its key tables are. Besides these:
"`sources`" (kind, and options every kind has) and "kind: `KIND`" (that backend's Options)."""

ALIASES = {("services", ANY, "approvals"): ("approvals",),  # per-service overrides of the same keys
           ("evacuation", "approvals"): ("approvals",),  # the evacuation's own policy: the same keys
           ("services", ANY, "runbooks", "failback", ANY): STEP,  # every list of steps is a list of steps
           ("services", ANY, "runbooks", "drill", ANY, ANY): STEP}


# -- the model -----------------------------------------------------------------------------

def _model_paths(tp: typing.Any, prefix: tuple[str, ...], out: set[tuple[str, ...]]) -> None:
    """Every path of keys in ``tp``: intermediate ones and leaves."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _model_paths(args[0], prefix, out)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is not type(None):
                _model_paths(a, prefix, out)
        return
    if origin in (list, tuple, set, frozenset, dict):
        if args and (origin is not tuple or args[-1] is not Ellipsis or len(args) == 2):
            _model_paths(args[-1] if origin is dict else args[0], prefix + (ANY,), out)
        return
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, field in tp.model_fields.items():
            key = field.alias or name
            out.add(prefix + (key,))
            _model_paths(field.annotation, prefix + (key,), out)


def _leaves(paths: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    return {p for p in paths if not any(q[:len(p)] == p and q != p for q in paths) and p[-1] != ANY}


def model_paths() -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    _model_paths(Config, (), out)
    out = {p for p in out if not (p[:1] == ("sources",) and len(p) > 2)}  # SourceSpec: kind + options
    for kind in registry.kinds():
        _model_paths(registry.backend_class(kind).Options, ("sources", kind), out)
    return {p for p in out if p[-1] != ANY}


# -- the docs ------------------------------------------------------------------------------

_HEADING = re.compile(r"^(#{2,4}) (.+?)\s*$")
_INTRO = re.compile(r"^`([A-Za-z_][\w.]*)`( items)?:$")
_KIND = re.compile(r"^kind: `([a-z0-9_]+)`$")


def documented() -> tuple[set[tuple[str, ...]], list[str]]:
    """Documented key paths, and the places that could not be placed in the model."""
    paths: set[tuple[str, ...]] = set()
    unplaced: list[str] = []
    heading, intro, in_table, base = "", (), False, None
    previous = ""
    for n, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), 1):
        if (m := _HEADING.match(line)):
            heading, in_table = m.group(2), False
            continue
        if line.startswith("| Key |"):
            m = _INTRO.match(previous)
            intro = (tuple(m.group(1).split(".")) + ((ANY,) if m.group(2) else ())) if m else ()
            in_table, base = True, _section(heading)
            if base is None:
                unplaced.append(f"docs/config.md:{n}: a key table under '{heading}', which the test does not know")
            continue
        if line.strip():
            previous = line.strip()
        if not line.startswith("|"):
            in_table = False
            continue
        if not in_table or base is None or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        key = re.match(r"^`([^`]+)`", cells[0])
        if not key:
            unplaced.append(f"docs/config.md:{n}: a row without a `key`: {cells[0]}")
            continue
        parts = tuple(ANY if p.isupper() else p for p in key.group(1).replace("[]", ".*").split("."))
        for full in base(intro + parts):
            paths.add(full)
            if len(cells) > 1 and "{source: NAME}" in cells[1]:
                paths.add(full + ("source",))
    return paths, unplaced


def _section(heading: str):
    if heading in SECTIONS:
        prefix = SECTIONS[heading]
        return lambda key: [prefix + key]
    if heading == "`sources`":  # `kind` of every source; other keys: options of every kind
        return lambda key: ([("sources", ANY) + key] if key == ("kind",)
                            else [("sources", kind) + key for kind in registry.kinds()])
    if (m := _KIND.match(heading)):
        return lambda key: [("sources", m.group(1)) + key]
    return None


def _aliased(path: tuple[str, ...]) -> tuple[str, ...]:
    for alias, target in ALIASES.items():
        if path[:len(alias)] == alias:
            return target + path[len(alias):]
    return path


# -- the tests -----------------------------------------------------------------------------

def test_every_key_table_of_the_docs_is_placed_in_the_model():
    _, unplaced = documented()
    assert not unplaced, "\n".join(unplaced)


def test_every_key_of_the_config_model_is_documented():
    docs, _ = documented()
    model = model_paths()
    missing = sorted(".".join(p) for p in _leaves(model)
                     if p not in docs and _aliased(p) not in docs and p[:2] != ("sources", ANY))
    assert not missing, "keys of the config model missing from docs/config.md:\n" + "\n".join(missing)


def test_every_documented_key_exists():
    docs, _ = documented()
    model = model_paths() | {("sources", ANY), ("sources", ANY, "kind")}
    unknown = sorted(".".join(p) for p in docs if p not in model)
    assert not unknown, "keys documented in docs/config.md that the config model does not have:\n" + "\n".join(unknown)


def test_the_reader_finds_keys_and_nested_keys():
    """The test's own reader: a few paths it must see, or the checks above prove nothing."""
    docs, _ = documented()
    for path in [("regions",), ("services", ANY, "lag", "stale_after"), ("approvals", "break_glass", "group"),
                 ("sources", "sandbox", "profiles", ANY, "jitter"), ("sources", "rds", "timeout"),
                 ("alerts", "slack_rules", ANY, "match"), ("archive", "source"), (*STEP, "verify", "within")]:
        assert path in docs, path
    assert ("services", ANY, "lag", "source") in model_paths()


# -- the Slack manifest asks for what the code uses, and no more ---------------------------

MANIFEST = ROOT / "deploy" / "slack-app-manifest.yaml"
IAM_POLICY = ROOT / "deploy" / "iam-policy.json"

METHOD_SCOPES: dict[str, set[str]] = {
    "chat.postMessage": {"chat:write"}, "chat.update": {"chat:write"}, "chat.postEphemeral": {"chat:write"},
    # groups:write: the same calls in private incident channels (incidents.private_channels)
    "conversations.create": {"channels:manage", "groups:write"},
    "conversations.invite": {"channels:manage", "groups:write"},
    "conversations.history": {"channels:history"}, "conversations.setTopic": {"channels:manage", "groups:write"},
    "pins.add": {"pins:write"},
    "files.upload.v2": {"files:write"}, "usergroups.users.list": {"usergroups:read"},
    "users.info": {"users:read"}, "users.lookupByEmail": {"users:read.email"}, "views.open": set(), "views.publish": set(), "chat.getPermalink": set(),
    "auth.test": set(),
}
"""Slack's scope for each Web API method drbot calls (api.slack.com/methods)."""
EVENT_SCOPES = {"message": {"channels:history", "groups:history"}, "reaction_added": {"reactions:read"},
                "app_home_opened": set()}
WITHOUT_A_METHOD = {"commands", "chat:write.public"}  # the slash command; posting where drbot was not invited


def _attributes(paths) -> set[str]:
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)  # get_paginator("list_...")
    return names


def slack_methods() -> set[str]:
    from slack_sdk import WebClient
    api = {name for name in vars(WebClient) if not name.startswith("_") and callable(vars(WebClient)[name])}
    used = _attributes(sorted((ROOT / "transports").rglob("*.py"))) & api
    return {name.replace("_", ".") for name in used}


def test_the_manifest_scopes_are_exactly_those_the_code_needs():
    from transports.slack.payloads import HANDLED_EVENTS

    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    methods = slack_methods()
    assert {"chat.postMessage", "views.open", "files.upload.v2"} <= methods  # the scan sees calls
    unknown = methods - set(METHOD_SCOPES)
    assert not unknown, f"Slack methods called without a known scope (add them to METHOD_SCOPES): {unknown}"
    needed = set(WITHOUT_A_METHOD).union(*(METHOD_SCOPES[m] for m in methods),
                                         *(EVENT_SCOPES[e] for e in HANDLED_EVENTS))
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert scopes == needed, f"missing: {sorted(needed - scopes)}; not used: {sorted(scopes - needed)}"
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    expected = ({"message.channels", "message.groups"} if "message" in HANDLED_EVENTS else set()) | \
        ({"reaction_added"} if "reaction_added" in HANDLED_EVENTS else set()) | \
        ({"app_home_opened"} if "app_home_opened" in HANDLED_EVENTS else set())
    assert events == expected


# -- the IAM policy allows what the code calls, and no more --------------------------------

S3_ACTIONS = {"HeadBucket": "ListBucket", "ListObjectsV2": "ListBucket"}  # S3 operations authorised by another action's name
OPT_IN = "DataLosingAuroraFailoverDeniedUntilYouOptInSeeDeployReadme"


def aws_actions() -> set[str]:
    """``service:Operation`` of every boto3 operation a backend in integrations/aws names."""
    import botocore.session

    session = botocore.session.get_session()
    actions: set[str] = set()
    for path in sorted((ROOT / "integrations" / "aws").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        services = {n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "boto3_service" for t in n.targets)}
        names = _attributes([path])
        for service in services:
            model = session.get_service_model(service)
            prefix = service  # boto3's names of these four services are their IAM prefixes
            for op in model.operation_names:
                if botocore.xform_name(op) in names:
                    op = S3_ACTIONS.get(op, op) if service == "s3" else op
                    actions.add(f"{prefix}:{op}")
    return actions


def test_the_iam_policy_allows_exactly_the_calls_of_the_code():
    policy = json.loads(IAM_POLICY.read_text(encoding="utf-8"))
    statements = {s["Sid"]: s for s in policy["Statement"]}
    granted = {a for s in statements.values() if s["Effect"] == "Allow" for a in s["Action"]}
    opt_in = set(statements[OPT_IN]["Action"])
    assert statements[OPT_IN]["Effect"] == "Deny" and opt_in == {"rds:FailoverGlobalCluster"}
    called = aws_actions()
    assert {"rds:SwitchoverGlobalCluster", "route53:ChangeResourceRecordSets", "s3:ListBucket"} <= called
    assert granted | opt_in == called, (f"called, not in the policy: {sorted(called - granted - opt_in)}; "
                                        f"in the policy, never called: {sorted((granted | opt_in) - called)}")
    assert not granted & opt_in
    assert OPT_IN in (ROOT / "deploy" / "README.md").read_text(encoding="utf-8")


def test_the_example_config_names_every_kind_drbot_knows():
    text = (ROOT / "deploy" / "drbot.example.yaml").read_text(encoding="utf-8")
    comment = " ".join(line.lstrip("# ") for line in text.split("# Known kinds:", 1)[1].split("\nsources:")[0].splitlines())
    named = set(re.findall(r"\b[a-z][a-z0-9_]+\b", comment.split("(docs/config.md")[0]))
    assert set(registry.kinds()) <= named, sorted(set(registry.kinds()) - named)
