"""Which timeline a restore follows, from the history files in the archive."""

from __future__ import annotations

from pgharbor.archive.fetch import read_archived
from pgharbor.catalog.backups import BackupRepo
from pgharbor.domain.history import TimelineHistory
from pgharbor.domain.pitr import RecoveryTarget
from pgharbor.domain.wal import parse_name
from pgharbor.errors import NotFound, PgharborError, UsageError
from pgharbor.model import Cluster, Placement
from pgharbor.settings import Settings
from pgharbor.storage.factory import open_storage
from pgharbor.storage.layout import history_prefix


def archived_timelines(settings: Settings, cluster: Cluster, places: list[Placement]) -> set[int]:
    found: set[int] = set()
    for p in places:
        try:
            for obj in open_storage(p.url, settings.target_options(p.target)).list(
                history_prefix(cluster.name)
            ):
                name = obj.key.rsplit("/", 1)[1]
                if name.endswith(".history"):
                    found.add(int(name[:8], 16))
        except PgharborError:
            continue
    return found


def resolve_timeline(
    settings: Settings,
    cluster: Cluster,
    places: list[Placement],
    target: RecoveryTarget,
    repo: BackupRepo,
) -> tuple[int, TimelineHistory]:
    backup_tlis = {b.timeline or 1 for b in repo.for_cluster(cluster.name, status="ok")}
    if target.timeline == "latest":
        timeline = max(archived_timelines(settings, cluster, places) | backup_tlis | {1})
    elif target.timeline == "current":
        timeline = max(backup_tlis | {1})
    else:
        try:
            timeline = int(target.timeline)
        except ValueError:
            raise UsageError(
                f"bad timeline {target.timeline!r}: use a number, latest or current"
            ) from None
    if timeline == 1:
        return 1, TimelineHistory(1)
    name = f"{timeline:08X}.history"
    found = read_archived(settings, cluster.with_placements(tuple(places)), parse_name(name))
    if found is None:
        raise NotFound(f"timeline {timeline} has no history file ({name}) in the archive")
    return timeline, TimelineHistory.parse(timeline, found[0].decode())
