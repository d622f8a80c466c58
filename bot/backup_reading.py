"""A backup-age reading: when the newest backup of a backup entry was taken, as its
source (``integrations.base.BackupSource``) found it now. ``backup`` None with status OK
means the source answered and has no backup at all."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from bot.readings import Reading, Status
from integrations.base import Backend, BackupPoint


@dataclass(frozen=True)
class BackupReading(Reading):
    backup: BackupPoint | None = None


def read_backup(source: str, backend: Backend, target: str) -> BackupReading:
    """Ask ``backend`` for the newest backup of ``target`` (the loader checked that it reads
    backups and the target's form); its IntegrationError goes up."""
    point = backend.newest_backup(target)  # type: ignore[attr-defined]
    return BackupReading("backup", source, Status.OK, observed_at=datetime.now(timezone.utc), backup=point,
                         detail=point.detail if point else f"no backup of {target}", sandbox=backend.sandbox)
