"""The catalog's retention records: the policy (fleet default and per-cluster overrides),
backup holds, the ``expiring`` mark of backups an expire run deletes, and forgetting
expired WAL files."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from pgharbor.catalog.repo import Catalog, aware, now
from pgharbor.catalog.schema import backup_holds, backups, retention_policies, wal_copies
from pgharbor.errors import Conflict

DEFAULT = "default"  # the scope of the fleet default row
MARKABLE = ("ok", "failed", "unusable", "expiring", "deleting")


@dataclass(frozen=True)
class PolicyRow:
    """One scope's settings; None: not set there (falls back)."""

    keep_last: int | None = None
    recovery_window: timedelta | None = None
    min_backups: int | None = None


@dataclass(frozen=True)
class HoldRow:
    backup_id: str
    until: datetime | None
    reason: str
    created_at: datetime


class RetentionRepo:
    def __init__(self, catalog: Catalog) -> None:
        self.cat = catalog

    # -- policy ------------------------------------------------------------------
    def policy(self, scope: str) -> PolicyRow:
        q = sa.select(retention_policies).where(retention_policies.c.scope == scope)
        with self.cat.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        if r is None:
            return PolicyRow()
        window = r["recovery_window_s"]
        return PolicyRow(
            r["keep_last"],
            timedelta(seconds=window) if window is not None else None,
            r["min_backups"],
        )

    def set_policy(self, scope: str, cluster_id: str | None, values: dict[str, object]) -> None:
        """Upsert the given fields of one scope (the others stay as they are)."""
        t = now()
        with self.cat.engine.begin() as conn:
            found = conn.execute(
                sa.select(retention_policies.c.scope).where(retention_policies.c.scope == scope)
            ).first()
            if found:
                conn.execute(
                    retention_policies.update()
                    .where(retention_policies.c.scope == scope)
                    .values(**values, modified_at=t)
                )
            else:
                conn.execute(
                    retention_policies.insert().values(
                        scope=scope, cluster_id=cluster_id, **values, modified_at=t
                    )
                )

    # -- holds -------------------------------------------------------------------
    def hold(self, backup_id: str, until: datetime | None, reason: str) -> None:
        """Pin a usable backup (a new hold replaces an older one). The backup row is
        touched in the same transaction, so a concurrent expire either sees the hold or
        has already marked the backup (then Conflict)."""
        with self.cat.engine.begin() as conn:
            touched = conn.execute(
                backups.update()
                .where(backups.c.id == backup_id, backups.c.status == "ok")
                .values(modified_at=now())
            )
            if not touched.rowcount:
                raise Conflict(f"backup {backup_id} is not usable (ok): it cannot be held")
            conn.execute(backup_holds.delete().where(backup_holds.c.backup_id == backup_id))
            conn.execute(
                backup_holds.insert().values(
                    backup_id=backup_id, until=until, reason=reason, created_at=now()
                )
            )

    def release(self, backup_id: str) -> bool:
        with self.cat.engine.begin() as conn:
            done = conn.execute(backup_holds.delete().where(backup_holds.c.backup_id == backup_id))
        return bool(done.rowcount)

    def holds(self, cluster_id: str) -> dict[str, HoldRow]:
        q = (
            sa.select(backup_holds)
            .join(backups, backups.c.id == backup_holds.c.backup_id)
            .where(backups.c.cluster_id == cluster_id)
        )
        with self.cat.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return {
            r["backup_id"]: HoldRow(
                r["backup_id"],
                aware(r["until"]) if r["until"] else None,
                r["reason"],
                aware(r["created_at"]),
            )
            for r in rows
        }

    def held(self, backup_id: str, at: datetime) -> HoldRow | None:
        """The backup's hold if it is active at ``at``."""
        q = sa.select(backup_holds).where(backup_holds.c.backup_id == backup_id)
        with self.cat.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        if r is None:
            return None
        until = aware(r["until"]) if r["until"] else None
        if until is not None and until <= at:
            return None
        return HoldRow(backup_id, until, r["reason"], aware(r["created_at"]))

    # -- expiring ----------------------------------------------------------------
    def mark_expiring(self, ids: Iterable[str]) -> list[str]:
        """Mark backups ``expiring`` in one transaction (a restore never chooses them
        from then on); returns the ones marked (a running one never is)."""
        ids = list(ids)
        if not ids:
            return []
        with self.cat.engine.begin() as conn:
            conn.execute(
                backups.update()
                .where(backups.c.id.in_(ids), backups.c.status.in_(MARKABLE))
                .values(status="expiring", modified_at=now())
            )
            q = sa.select(backups.c.id).where(backups.c.id.in_(ids), backups.c.status == "expiring")
            marked = {r[0] for r in conn.execute(q)}
        return [i for i in ids if i in marked]

    def unmark(self, backup_id: str) -> None:
        """An expiring backup that turned out to be held goes back to ``ok``."""
        with self.cat.engine.begin() as conn:
            conn.execute(
                backups.update()
                .where(backups.c.id == backup_id, backups.c.status == "expiring")
                .values(status="ok", modified_at=now())
            )

    # -- WAL ---------------------------------------------------------------------
    def forget_wal(self, cluster_id: str, target_id: str, names: Iterable[str]) -> int:
        """Remove the copy rows of expired files on one target."""
        names = list(names)
        gone = 0
        with self.cat.engine.begin() as conn:
            for i in range(0, len(names), 500):
                done = conn.execute(
                    wal_copies.delete().where(
                        wal_copies.c.cluster_id == cluster_id,
                        wal_copies.c.target_id == target_id,
                        wal_copies.c.name.in_(names[i : i + 500]),
                    )
                )
                gone += done.rowcount
        return gone
