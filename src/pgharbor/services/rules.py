"""The rules every operation on the fleet checks, in one place."""

from __future__ import annotations

from pgharbor.errors import UsageError

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_name(kind: str, name: str) -> str:
    """Cluster and target names are folder names on every target: letters, digits, '-',
    '_' and '.' (not leading), at most 128 characters."""
    if not name or not set(name) <= NAME_CHARS or name.startswith(".") or len(name) > 128:
        raise UsageError(
            f"bad {kind} name {name!r}: use letters, digits, '-', '_' and '.' (not leading)"
        )
    return name


def check_priority(priority: int) -> int:
    if priority < 0:
        raise UsageError("priority must be 0 or more (lower is tried first)")
    return priority


def check_required_copies(cluster: str, required: int, active_placements: int) -> int:
    """More required copies than active placements would fail every wal push (and
    PostgreSQL would keep its WAL until the disk is full): refused. One copy is always
    allowed, the default a cluster is registered with before it has placements."""
    if required < 1:
        raise UsageError("required copies must be at least 1")
    if required > max(active_placements, 1):
        raise UsageError(
            f"cluster {cluster!r} has {active_placements} active placement(s): it cannot "
            f"require {required} copies",
            hint="add placements first (pgharbor placement add)",
        )
    return required
