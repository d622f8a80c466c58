"""What of a file that does not validate can still be checked: the file without its broken
parts, so that one bad value does not hide the source and reference errors of the rest."""
from __future__ import annotations

from pydantic import ValidationError

from bot.config.models import Config

Loc = tuple[str | int, ...]


def salvage(data: dict, bad: list[Loc]) -> tuple[Config | None, list[int] | None, set[str]]:
    """The file without its broken parts (a broken service or source is left out, any other
    broken top-level key takes its default), so that the sources and references of the rest
    are still checked in the same run. Returns the config (None when even that does not
    validate), the original indexes of the services kept, and the names of broken sources."""
    drop_keys: set[str] = set()
    drop_services: set[int] = set()
    broken: set[str] = set()
    for loc in bad:
        if not loc:
            return None, None, broken
        if loc[0] == "services" and len(loc) > 1 and isinstance(loc[1], int):
            drop_services.add(loc[1])
        elif loc[0] == "sources" and len(loc) > 1 and isinstance(data.get("sources"), dict):
            broken.add(str(loc[1]))
        else:
            drop_keys.add(str(loc[0]))
    rest = {k: v for k, v in data.items() if k not in drop_keys}
    if broken:
        rest["sources"] = {k: v for k, v in data["sources"].items() if k not in broken}
    kept: list[int] | None = None
    if isinstance(data.get("services"), list) and "services" not in drop_keys:
        kept = [i for i in range(len(data["services"])) if i not in drop_services]
        rest["services"] = [data["services"][i] for i in kept]
    try:
        return Config.model_validate(rest), kept, broken
    except ValidationError:
        return None, None, broken


def renumber(found: list[tuple[Loc, str]], kept: list[int] | None) -> list[tuple[Loc, str]]:
    """Locations in the salvaged services list back to the file's indexes."""
    if kept is None:
        return found
    return [((loc[0], kept[loc[1]]) + loc[2:] if len(loc) > 1 and loc[0] == "services" and isinstance(loc[1], int)
             else loc, msg) for loc, msg in found]
