"""Load a YAML config into typed models, or fail with every problem, each with the path of
the field, the line number where the YAML has one, and a human sentence:

    drbot.yaml:14: services[1].lag.warning: '5 minutes' is not a duration (use 5m)
"""
from __future__ import annotations

import difflib
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bot.config.models import Config
from bot.config.dependencies import check_dependencies
from bot.config.paging import check_paging
from bot.config.runbooks import drill_notes, ramp_problem
from bot.config.salvage import renumber, salvage
from bot.config.streams import check_streams, stream_notes
from integrations import registry
from integrations.base import ARCHIVE, BACKUP, DATABASE, HEALTH, STATUS, TRACKER, TRAFFIC, WEIGHTS, BackendOptions
from integrations.steps import HTTP_CALL

Loc = tuple[str | int, ...]
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Problem:
    loc: Loc
    message: str
    line: int | None = None

    @property
    def path(self) -> str:
        return format_loc(self.loc)


class ConfigError(Exception):
    def __init__(self, file: str, problems: list[Problem]):
        self.file = file
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = []
        for p in self.problems:
            where = f"{self.file}:{p.line}" if p.line else self.file
            lines.append(f"{where}: {p.path + ': ' if p.loc else ''}{p.message}")
        return "\n".join(lines)


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    path: str
    options: dict[str, BackendOptions]
    """Validated backend options per source name."""
    notes: tuple[Problem, ...] = ()
    """Valid, but worth knowing (e.g. a drill scenario that can never pass as a drill):
    printed by ``drbot check-config`` and logged as warnings at start."""


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load_config(path: str | os.PathLike, environ: typing.Mapping[str, str] | None = None) -> LoadedConfig:
    """Read, substitute ``${ENV}``, validate. Raises ConfigError listing every problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(file, [Problem((), "file not found (set DRBOT_CONFIG or pass --config; "
                                             "deploy/demo.yaml is a working example)")]) from None
    except OSError as e:
        raise ConfigError(file, [Problem((), f"cannot read the file: {e.strerror}")]) from None
    return parse_config(text, file, os.environ if environ is None else environ)


def parse_config(text: str, file: str = "<config>", environ: typing.Mapping[str, str] | None = None) -> LoadedConfig:
    environ = os.environ if environ is None else environ
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise ConfigError(file, [Problem((), f"not valid YAML: {getattr(e, 'problem', e)}", line)]) from None
    if not isinstance(data, dict):
        raise ConfigError(file, [Problem((), "the file must be a YAML mapping with regions, sources and services")])
    lines = _line_index(node)
    problems: list[Problem] = []
    data = _substitute_env(data, (), environ, problems)

    def located(loc: Loc, message: str) -> Problem:
        return Problem(loc, message, _line_for(lines, loc))

    problems = [located(p.loc, p.message) for p in problems]
    unset = [p.loc for p in problems]  # an unset ${VAR} is its problem; not also the "" it left

    def new(found: list[tuple[Loc, str]]) -> list[Problem]:
        return [located(loc, msg) for loc, msg in found if not any(loc[:len(u)] == u for u in unset)]

    try:
        config = Config.model_validate(data)
        kept: list[int] | None = None
        broken: set[str] = set()
    except ValidationError as e:
        errors = _explain(e, Config)
        problems += new(errors)
        config, kept, broken = salvage(data, [loc for loc, _ in errors])
        if config is None:  # a required part is itself broken: nothing further can be checked
            raise ConfigError(file, problems) from None
    options: dict[str, BackendOptions] = {}
    problems += new(_check_sources(config, options))
    problems += new(renumber(_check_references(config, options, broken), kept))
    problems += new(renumber(check_dependencies(config), kept))
    problems += new(check_paging(config, broken))
    if problems:
        raise ConfigError(file, _in_order(problems))
    notes = tuple(located(loc, msg) for loc, msg in _notes(config))
    return LoadedConfig(config=config, path=file, options=options, notes=notes)


def _in_order(problems: list[Problem]) -> list[Problem]:
    """In the order of the file (problems without a line first), each once."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: p.line or 0)


# -- YAML line numbers -------------------------------------------------------------------

def _line_index(node: yaml.Node | None, loc: Loc = (), out: dict | None = None) -> dict[Loc, int]:
    out = {} if out is None else out
    if node is None:
        return out
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = loc + (key.value,)
            out[child] = key.start_mark.line + 1
            _line_index(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, loc + (i,), out)
    return out


def _line_for(lines: dict[Loc, int], loc: Loc) -> int | None:
    while True:
        if loc in lines:
            return lines[loc] if loc else None
        if not loc:
            return None
        loc = loc[:-1]


# -- ${ENV} substitution -----------------------------------------------------------------

def _substitute_env(value: Any, loc: Loc, environ, problems: list[Problem]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute_env(v, loc + (k,), environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, loc + (i,), environ, problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def repl(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(Problem(loc, f"environment variable {name} is not set "
                                     f"(export it, or write ${{{name}:-default}})"))
        return ""

    return _ENV.sub(repl, value)


# -- pydantic errors in plain words -----------------------------------------------------

def _explain(error: ValidationError, model: type[BaseModel], prefix: Loc = ()) -> list[tuple[Loc, str]]:
    out = []
    for err in error.errors(include_url=False):
        loc = prefix + tuple(err["loc"])
        out.append((loc, _sentence(err, model, tuple(err["loc"]))))
    return out


def _sentence(err: dict, model: type[BaseModel], loc: Loc) -> str:
    kind, value = err["type"], err.get("input")
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        text = "unknown key"
        if hint:
            text += f" (did you mean '{hint[0]}'?)"
        elif allowed:
            text += f" (allowed: {', '.join(allowed)})"
        return text
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind == "literal_error":
        return f"{value!r} is not one of: {err['ctx']['expected']}"
    if kind == "string_pattern_mismatch":
        return (f"{value!r} is not a valid name (lower-case letters, digits, '-' and '_'; "
                "must start with a letter or digit)") if "a-z0-9" in err["ctx"]["pattern"] \
            else f"{value!r} does not match {err['ctx']['pattern']}"
    if kind in _BOUNDS:
        word, key = _BOUNDS[kind]
        return f"{value!r} is {word} {err['ctx'][key]}"
    if kind in ("too_short", "too_long"):
        return err["msg"].replace("List should", "needs to").replace("Dictionary should", "needs to")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        wanted = kind.split("_")[0].replace("dict", "mapping").replace("model", "mapping")
        wanted = {"int": "whole number", "float": "number", "bool": "true or false",
                  "string": "text", "list": "list"}.get(wanted, wanted)
        return f"{value!r} is not a {wanted}"
    return err["msg"]


_BOUNDS = {"greater_than_equal": ("below the minimum,", "ge"), "greater_than": ("too small: it must be above", "gt"),
           "less_than_equal": ("above the maximum,", "le"), "less_than": ("too large: it must be below", "lt")}


def _allowed_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    tp: Any = model
    for part in loc:
        tp = _model_in(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return []
            tp = field.annotation
        elif typing.get_origin(tp) in (list, dict):
            tp = typing.get_args(tp)[-1]
        else:
            return []
    tp = _model_in(tp)
    return sorted(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _model_in(tp: Any) -> Any:
    """Unwrap Optional/Union/Annotated down to a model or a container type."""
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for a in args:
            if (isinstance(a, type) and issubclass(a, BaseModel)) or typing.get_origin(a) in (list, dict):
                return a
    return tp


# -- sources and cross-references -------------------------------------------------------

def _check_sources(config: Config, options: dict[str, BackendOptions]) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    for name, spec in config.sources.items():
        loc: Loc = ("sources", name)
        try:
            cls = registry.backend_class(spec.kind)
        except KeyError:
            hint = difflib.get_close_matches(spec.kind, registry.kinds(), n=1)
            out.append((loc + ("kind",), f"unknown kind {spec.kind!r}"
                        + (f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(registry.kinds())})")))
            continue
        try:
            options[name] = cls.Options.model_validate(spec.options)
        except ValidationError as e:
            out += _explain(e, cls.Options, loc)
    return out


def _check_references(config: Config, options: dict[str, BackendOptions],
                      broken: set[str] = frozenset()) -> list[tuple[Loc, str]]:
    """``broken``: sources left out because their own spec is invalid (already reported)."""
    out: list[tuple[Loc, str]] = []
    regions = set(config.regions)
    seen: set[str] = set()

    def capable(source: str, capability: str) -> str | None:
        if source in broken:
            return None
        if source not in config.sources:
            hint = difflib.get_close_matches(source, list(config.sources), n=1)
            return f"no source named {source!r}" + (f" (did you mean '{hint[0]}'?)" if hint else "")
        if source not in options:
            return None  # its own problem is already reported
        cls = registry.backend_class(config.sources[source].kind)
        if capability not in cls.capabilities:
            return f"source {source!r} (kind {cls.kind}) cannot serve as a {capability} source"
        return None

    for key, capability in (("statuspage", STATUS), ("archive", ARCHIVE)):
        control = getattr(config, key)
        if control is not None and (msg := capable(control.source, capability)):
            out.append(((key, "source"), msg))
    tracker = config.incidents.followups.tracker
    if tracker is not None and (msg := capable(tracker, TRACKER)):
        out.append((("incidents", "followups", "tracker"), msg))
    for i, svc in enumerate(config.services):
        loc: Loc = ("services", i)
        if svc.name in seen:
            out.append((loc + ("name",), f"service {svc.name!r} is defined twice"))
        seen.add(svc.name)
        for key in ("active", "standby"):
            region = getattr(svc, key)
            if region not in regions:
                out.append((loc + (key,), f"{region!r} is not one of the regions ({', '.join(config.regions)})"))
        if svc.active == svc.standby:
            out.append((loc + ("standby",), "standby must differ from the active region"))
        out += check_streams(config, options, svc, loc, capable)
        for j, backup in enumerate(svc.backups):
            if (msg := capable(backup.source, BACKUP)):
                out.append((loc + ("backups", j, "source"), msg))
            elif backup.source in options and (why := registry.backend_class(
                    config.sources[backup.source].kind).check_target(backup.target)):
                out.append((loc + ("backups", j, "target"), why))
        for region, source in svc.health.items():
            if region not in (svc.active, svc.standby):
                out.append((loc + ("health", region), f"{region!r} is neither the active nor the standby region of {svc.name}"))
            elif (msg := capable(source, HEALTH)):
                out.append((loc + ("health", region), msg))
        for key, capability in (("traffic", TRAFFIC), ("database", DATABASE)):
            control = getattr(svc, key)
            if control is not None and (msg := capable(control.source, capability)):
                out.append((loc + (key, "source"), msg))
        out += _check_runbooks(svc, loc, capable, config.sources, options)
        for j, schedule in enumerate(svc.drills):
            if schedule.scenario not in svc.runbooks.drill:
                out.append((loc + ("drills", j, "scenario"), f"{svc.name} has no drill scenario "
                            f"{schedule.scenario!r} (add runbooks.drill.{schedule.scenario})"))
    return out


def _notes(config: Config) -> list[tuple[Loc, str]]:
    """Notes, not problems: what each drill scenario can prove (bot.config.runbooks), and
    stream thresholds above the RPO (bot.config.streams)."""
    out: list[tuple[Loc, str]] = stream_notes(config)
    for i, svc in enumerate(config.services):
        for name, steps in svc.runbooks.drill.items():
            out += [(("services", i, "runbooks", "drill", name) + sub, msg) for sub, msg in drill_notes(name, steps)]
    return out


def _check_runbooks(svc, loc: Loc, capable, sources, options) -> list[tuple[Loc, str]]:
    """Every step's backend exists and can do the step's action (a ``ramp``: split traffic by weight)."""
    out: list[tuple[Loc, str]] = []
    books = svc.runbooks
    named = [("failover", books.failover), ("failback", books.failback)]
    named += [(("drill", name), steps) for name, steps in books.drill.items()]
    for key, steps in named:
        key_loc = loc + ("runbooks",) + (key if isinstance(key, tuple) else (key,))
        for i, step in enumerate(steps):
            for part, action, source in (((), step.action, step.source),
                                         (("rollback",), step.rollback.action if step.rollback else None,
                                          step.rollback.source if step.rollback else None)):
                if action is None or action in ("check", "wait", "manual"):
                    continue
                capability = action.split(".")[0]
                own = capability in (TRAFFIC, DATABASE)  # other step kinds always name their source
                control = getattr(svc, capability) if own else None
                if part and not own and capability == step.action.split(".")[0]:
                    source = source or step.source  # an undo of the same kind goes through the step's source
                name = source or (control.source if control else None)
                if name is None:
                    out.append((key_loc + (i,) + part + ("source",),
                                f"{action} needs a source: name one here or set {capability}.source on the service"
                                if own else f"{action} needs a source: name a source of kind {capability} here"))
                elif (msg := capable(name, capability)):
                    out.append((key_loc + (i,) + part + ("source",), msg))
                elif not part and step.ramp is not None and (msg := ramp_problem(
                        name, capable(name, WEIGHTS), sources[name].kind if name in options else None,
                        options.get(name))):
                    out.append((key_loc + (i, "ramp"), msg))
            check = step.ramp.verify.http if step.ramp is not None and step.ramp.verify is not None else None
            if check is not None and (msg := capable(check.source, HTTP_CALL)):
                out.append((key_loc + (i, "ramp", "verify", "http", "source"), msg))
    return out

