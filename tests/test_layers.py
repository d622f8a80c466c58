"""The layers of DESIGN.md hold in the code: no import cycle among the project's modules,
the core (bot/) never imports commands/ or transports/, integrations/ import nothing of
drbot's own, only transports/ import the Slack SDK, and no project module is imported
inside a function (the way cycles are usually hidden)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "commands", "integrations", "transports")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _target(name: str) -> str | None:
    """The project module an imported name resolves to (a submodule when it is one)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(module-level imports, imports inside functions) of project modules, with lines."""
    tree = ast.parse(path.read_text(), str(path))
    top, nested = [], []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [f"{child.module}.{a.name}" for a in child.names]
            for n in names:
                target = _target(n)
                if target is not None and n.split(".")[0] in PACKAGES:
                    (nested if inside else top).append((target, child.lineno))
            visit(child, inside)

    visit(tree, False)
    return top, nested


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    return module.split(".")[0]


def test_no_import_cycles():
    edges = {m: {t for t, _ in top if t != m} for m, (top, _) in GRAPH.items()}
    # a package's __init__ importing its own submodules is not a cycle
    for m in edges:
        edges[m] = {t for t in edges[m] if not (MODULES[m].name == "__init__.py" and t.startswith(m + "."))}
        edges[m] = {t for t in edges[m] if not (MODULES[t].name == "__init__.py" and m.startswith(t + "."))}
    state: dict[str, int] = {}
    cycles = []

    def walk(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t] if t in stack else [m, t])
            elif t not in state:
                walk(t, stack + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            walk(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("layer,forbidden", [
    ("bot", {"commands", "transports"}),
    ("commands", {"transports"}),
    ("integrations", {"bot", "commands", "transports"}),
])
def test_layers_import_downwards_only(layer, forbidden):
    wrong = [f"{m}:{line} imports {t}" for m, (top, nested) in GRAPH.items() if _layer(m) == layer
             for t, line in top + nested if _layer(t) in forbidden]
    assert not wrong, "\n".join(wrong)


def test_no_project_imports_inside_functions():
    hidden = [f"{m}:{line} imports {t} inside a function" for m, (_, nested) in GRAPH.items() for t, line in nested]
    assert not hidden, "\n".join(hidden)


def test_only_transports_import_the_slack_sdk():
    users = []
    for name, path in MODULES.items():
        if _layer(name) == "transports":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            users += [f"{name} imports {m}" for m in mods if m.split(".")[0] in ("slack_bolt", "slack_sdk")]
    assert not users, "\n".join(users)


def test_the_graph_is_read():
    """The checks above would pass on an empty graph: make sure the walk found the core."""
    assert "bot.engine" in GRAPH and ("bot.plans", ) and any(t == "bot.plans" for t, _ in GRAPH["bot.engine"][0])


def test_commands_run_no_database_queries():
    """Commands call core functions; sessions and queries stay in the core."""
    found = []
    for name, path in MODULES.items():
        if _layer(name) != "commands":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and (
                    node.module.split(".")[0] in ("sqlmodel", "sqlalchemy") or node.module == "bot.store"
                    or any(a.name == "session_scope" for a in node.names)):
                found.append(f"{name}:{node.lineno} imports {node.module}")
    assert not found, "\n".join(found)
