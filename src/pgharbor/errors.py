"""The error tree, and the one exit policy that turns an exception into a message line
and an exit code (used by both front doors: entry.py's lean path and the Click CLI).

Exit codes stay below 126: PostgreSQL treats a higher exit status from
archive_command/restore_command as fatal for the archiver or for recovery — which is
exactly what ``wal fetch`` wants in archive recovery for anything but "not archived".
"""

from __future__ import annotations


class PgharborError(Exception):
    """Base of every error a user can cause or see. ``code`` is the process exit status."""

    code = 1
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        """The message with its hint, without the ``pgharbor: error:`` prefix."""
        msg = str(self)
        if self.hint:
            msg += f" (hint: {self.hint})"
        return msg

    def line(self) -> str:
        return f"pgharbor: error: {self.message}"


class UsageError(PgharborError):
    code = 2


class ConfigError(PgharborError):
    code = 3


class CatalogError(PgharborError):
    code = 4


class CatalogUnavailable(CatalogError):
    code = 5


class CatalogRejected(CatalogError):
    """The catalog refused what was written (a constraint, a malformed value): retrying
    the same rows can never succeed."""


class NotFound(PgharborError):
    """A named thing (cluster, target, backup) is not in the catalog."""

    code = 6


class Conflict(PgharborError):
    """The request contradicts what is already recorded or stored."""

    code = 7


class Busy(Conflict):
    """Another operation holds what this one needs (a target's chunk store lease, a
    running backup): nothing was changed; try again when it is done."""


class GuardRefused(Conflict):
    """A safety guard stopped a deleting run before it changed anything (expire: more
    than half of the backups, a gap in the recovery window); ``--force`` overrides."""

    code = 20


class LeaseLost(Conflict):
    """This operation's lease expired or was taken over while it ran: it stopped before
    relying on the exclusion any further."""


class WalValidationError(PgharborError):
    """A WAL file is not what its name and the cluster say it is."""

    code = 8


class ArchiveIncomplete(PgharborError):
    """Fewer durable copies than required: PostgreSQL must keep the WAL and retry."""

    code = 9


class StorageError(PgharborError):
    code = 10


class ObjectNotFound(StorageError):
    code = 11


class ObjectExists(StorageError):
    code = 12


class StorageUnavailable(StorageError):
    """The target cannot be reached (network, timeout, server down)."""

    code = 13


class StoragePermissionDenied(StorageError):
    code = 14


class IntegrityError(StorageError):
    """A stored object failed its checksum, or its metadata does not match."""

    code = 15


class WrongTarget(StorageError):
    """The storage behind a target is not the one its placements were set up on (no claim
    of the cluster's folder, or another cluster's or target's): nothing counts there."""

    code = 19


class EncryptionError(PgharborError):
    code = 16


class PostgresError(PgharborError):
    """Talking to a managed PostgreSQL cluster failed."""

    code = 17


class Incomplete(PgharborError):
    """An operation finished what it could but skipped some of it (its result lists
    what): a script must notice (catalog rebuild)."""

    code = 21


class DrillFailed(PgharborError):
    """A restore drill ran and failed (its result, recorded in the catalog, says which
    check): the backup is not proven recoverable."""

    code = 22


class Unauthenticated(PgharborError):
    """The web front door: no credentials, or ones that do not hold (a wrong password, an
    unknown, revoked or expired token, an expired session). HTTP 401."""

    code = 23


class Forbidden(PgharborError):
    """The web front door: the credentials hold, but their scope is too low (or a
    cookie-authenticated change lacks its CSRF token). HTTP 403."""

    code = 24


class RateLimited(PgharborError):
    """Too many failed sign-ins of one user or from one client: refused for a while
    before the password is even checked. HTTP 429."""

    code = 25


class WalNotArchived(PgharborError):
    """wal fetch: no target has the file. Exit 1 is what PostgreSQL reads as "not in the
    archive" (the normal end of recovery, or a timeline probe)."""

    code = 1


ABORT_RECOVERY = 126  # restore_command: PostgreSQL stops recovery (FATAL)
INTERNAL_ERROR = 70


def exit_code(exc: BaseException, *, abort_recovery: bool = False) -> int:
    """The exit status for ``exc``. With ``abort_recovery`` (``wal fetch`` in archive
    recovery) only a confirmed "not in the archive" keeps its code: anything else, a bug,
    MemoryError or Ctrl-C included, stops recovery instead of ending it early."""
    if abort_recovery:
        return exc.code if isinstance(exc, WalNotArchived) else ABORT_RECOVERY
    if isinstance(exc, PgharborError):
        return exc.code
    if isinstance(exc, KeyboardInterrupt):
        return 1
    return INTERNAL_ERROR


def error_line(exc: BaseException) -> str:
    """One line for any failure (the traceback only with PGHARBOR_DEBUG=1)."""
    if isinstance(exc, PgharborError):
        return exc.line()
    if isinstance(exc, KeyboardInterrupt):
        return "pgharbor: interrupted"
    text = " ".join(str(exc).split())[:500]
    return f"pgharbor: internal error: {type(exc).__name__}: {text}"
