"""A small assertion on a JSON answer: a dotted path, an operator and a JSON literal.

    data.items[0].state == "RUNNING"
    status.ready >= 3
    result.ok                       (the value exists and is not null or false)

No expression evaluation: the text is parsed into a path of keys and list indices, one of
``== != < <= > >=`` and a JSON literal (a "string", a number, true, false or null).
``parse`` raises ``ValueError`` with what is wrong (used by the config check); ``holds``
answers with the value found, for the step's record.
"""
from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass
from typing import Any

_OPS = {"==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge,
        "<": operator.lt, ">": operator.gt}
_SPLIT = re.compile(r"^\s*(?P<path>[^=!<>\s]+)\s*(?:(?P<op>==|!=|<=|>=|<|>)\s*(?P<value>.+?))?\s*$")
_PART = re.compile(r"([A-Za-z_$][\w$-]*)|\[(\d+)\]|\.")
_MISSING = object()


@dataclass(frozen=True)
class Assertion:
    text: str
    path: tuple[str | int, ...]
    op: str | None
    value: Any


def parse(text: str) -> Assertion:
    m = _SPLIT.match(text or "")
    if not m:
        raise ValueError(f"{text!r} is not an assertion (write e.g. data.items[0].state == \"RUNNING\")")
    path = _path(m.group("path"))
    op, value = m.group("op"), None
    if op is not None:
        try:
            value = json.loads(m.group("value"))
        except json.JSONDecodeError:
            raise ValueError(f"{m.group('value')!r} is not a JSON literal (quote strings: \"RUNNING\"; "
                             "numbers, true, false and null bare)") from None
        if isinstance(value, (dict, list)):
            raise ValueError("compare with a string, a number, true, false or null, not a list or mapping")
    return Assertion(text.strip(), path, op, value)


def _path(text: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    pos, expect_name = 0, True
    while pos < len(text):
        m = _PART.match(text, pos)
        if not m:
            raise ValueError(f"cannot read the path {text!r} at {text[pos:]!r} (use keys, dots and [N])")
        if m.group(1) is not None:
            if not expect_name:
                raise ValueError(f"a '.' is missing before {m.group(1)!r} in {text!r}")
            parts.append(m.group(1))
            expect_name = False
        elif m.group(2) is not None:
            parts.append(int(m.group(2)))
        else:
            expect_name = True
        pos = m.end()
    if not parts or expect_name:
        raise ValueError(f"the path {text!r} is empty or ends with '.'")
    return tuple(parts)


def lookup(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(part, int) and isinstance(data, list) and part < len(data):
            data = data[part]
        elif isinstance(part, str) and isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return _MISSING
    return data


def holds(assertion: Assertion, data: Any) -> tuple[bool, str]:
    """Whether it holds, and what was found (for people)."""
    found = lookup(data, assertion.path)
    if found is _MISSING:
        return False, f"{assertion.text}: the answer has no {'.'.join(map(str, assertion.path))}"
    shown = json.dumps(found)[:200]
    if assertion.op is None:
        return found not in (None, False), f"{assertion.text}: found {shown}"
    try:
        ok = bool(_OPS[assertion.op](found, assertion.value))
    except TypeError:
        ok = False
    return ok, f"{assertion.text}: found {shown}"
