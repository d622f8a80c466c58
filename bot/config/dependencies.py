"""Service dependencies (``services[].depends_on``): checked at load time, ordered into
waves for a region evacuation. Pure functions over the config; no I/O."""
from __future__ import annotations

import difflib
from typing import Iterable

from bot.config.models import Config

Loc = tuple  # a location in the file, as bot.config.loader uses it


def check_dependencies(config: Config) -> list[tuple[Loc, str]]:
    """Unknown names, a service depending on itself, cycles (with their path), unknown
    services in ``evacuation.exclude``; in ``evacuation.drills`` an unknown region or a
    name given twice."""
    names = config.service_names
    out: list[tuple[Loc, str]] = []
    for i, svc in enumerate(config.services):
        for j, dep in enumerate(svc.depends_on):
            loc = ("services", i, "depends_on", j)
            if dep == svc.name:
                out.append((loc, f"{svc.name} cannot depend on itself"))
            elif dep not in names:
                out.append((loc, f"no service named {dep!r}{_hint(dep, names)}"))
    for j, name in enumerate(config.evacuation.exclude):
        if name not in names:
            out.append((("evacuation", "exclude", j), f"no service named {name!r}{_hint(name, names)}"))
    drill_names: list[str] = []
    for j, drill in enumerate(config.evacuation.drills):
        loc = ("evacuation", "drills", j)
        if drill.region not in config.regions:
            out.append((loc + ("region",), f"{drill.region!r} is not one of the regions ({', '.join(config.regions)})"
                                           f"{_hint(drill.region, config.regions)}"))
        if drill.name in drill_names:
            out.append((loc + ("name",), f"region drill {drill.name!r} is defined twice (each name once)"))
        drill_names.append(drill.name)
    reported: set[frozenset[str]] = set()
    for cycle in _cycles(config):
        if frozenset(cycle) in reported:
            continue
        reported.add(frozenset(cycle))
        first = cycle[0]
        i = names.index(first)
        j = config.services[i].depends_on.index(cycle[1])
        out.append((("services", i, "depends_on", j),
                    f"dependency cycle: {' -> '.join(cycle + [first])}; no order can move them (remove one of "
                    "these depends_on)"))
    return out


def _hint(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _cycles(config: Config) -> Iterable[list[str]]:
    """Each cycle of the dependency graph once per entry point, as the path that closes it."""
    graph = {s.name: [d for d in s.depends_on if d != s.name] for s in config.services}
    state: dict[str, str] = {}  # name -> 'open' (on the current path) | 'done'
    path: list[str] = []

    def visit(name: str) -> Iterable[list[str]]:
        state[name] = "open"
        path.append(name)
        for dep in graph.get(name, []):
            if state.get(dep) == "open":
                yield path[path.index(dep):]
            elif dep in graph and dep not in state:
                yield from visit(dep)
        path.pop()
        state[name] = "done"

    for name in graph:
        if name not in state:
            yield from visit(name)


def waves(config: Config, moving: Iterable[str]) -> list[list[str]]:
    """``moving`` in waves: a service comes after every moving service it depends on,
    directly or through services that are not moving. Names keep the config's order
    within a wave. Assumes no cycles (the loader refuses them)."""
    wanted = [n for n in config.service_names if n in set(moving)]
    needs = {n: moving_deps(config, n, set(wanted)) for n in wanted}
    out: list[list[str]] = []
    placed: set[str] = set()
    while len(placed) < len(wanted):
        wave = [n for n in wanted if n not in placed and needs[n] <= placed]
        if not wave:  # only a cycle can do this; the loader refuses cycles
            raise ValueError(f"dependency cycle among {sorted(set(wanted) - placed)}")
        out.append(wave)
        placed |= set(wave)
    return out


def moving_deps(config: Config, name: str, moving: set[str]) -> set[str]:
    """The moving services ``name`` depends on, looking through services that stay."""
    found: set[str] = set()
    seen: set[str] = {name}
    todo = list(config.service(name).depends_on)
    while todo:
        dep = todo.pop()
        if dep in seen or config.service(dep) is None:
            continue
        seen.add(dep)
        if dep in moving:
            found.add(dep)
        else:
            todo.extend(config.service(dep).depends_on)
    return found


def dependents(config: Config, name: str) -> set[str]:
    """Every service that depends on ``name``, directly or not."""
    out: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        for svc in config.services:
            if current in svc.depends_on and svc.name not in out:
                out.add(svc.name)
                todo.append(svc.name)
    return out
