"""wal fetch: one WAL file from the first target that has a good copy, written
atomically to DEST. Used as PostgreSQL's restore_command."""

from __future__ import annotations

import contextlib
import os
import sys

from pgharbor import envelope
from pgharbor.access import resolve
from pgharbor.archive.context import HotSession
from pgharbor.domain.wal import WalKind, parse_name, validate_segment
from pgharbor.errors import (
    EncryptionError,
    IntegrityError,
    ObjectNotFound,
    PgharborError,
    StorageError,
    UsageError,
    WalNotArchived,
)
from pgharbor.plain import Record
from pgharbor.storage.claim import check_claim
from pgharbor.storage.layout import wal_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pgharbor.crypto import Keyring
    from pgharbor.domain.wal import WalName
    from pgharbor.model import Cluster
    from pgharbor.settings import Settings


class FetchResult(Record):
    __slots__ = ("name", "target", "size", "skipped")  # noqa: RUF023

    def __init__(self, name: str, target: str, size: int, skipped: list[str]) -> None:
        self.name = name
        self.target = target
        self.size = size
        self.skipped = skipped


def write_atomic(dest: str, data: bytes, *, durable: bool = False) -> None:
    """Write DEST through a temporary name, so PostgreSQL never sees a partial file.
    ``durable``: fsynced before the rename (a prefetched file must survive a host crash
    whole or not at all: the restore_command's shell hands it over unchecked)."""
    folder = os.path.dirname(dest) or "."
    tmp = os.path.join(folder, f".pgharbor-fetch.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
        if durable:
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UsageError(f"cannot write {dest}: {exc.strerror or exc}") from None


# .history and .backup files are small text files; anything claiming more is not one
MAX_TEXT_FILE = 16 * 1024 * 1024


def _expected_size(ctx: Cluster, wal: WalName) -> int | None:
    """The exact size of a segment or .partial; None for the small text files."""
    return ctx.wal_segment_size if wal.kind in (WalKind.SEGMENT, WalKind.PARTIAL) else None


def open_copy(ctx: Cluster, wal: WalName, blob: bytes, keys: Keyring | None) -> bytes:
    """The verified contents of one stored copy, or an exception saying why not."""
    exact = _expected_size(ctx, wal)
    meta, data = envelope.unseal(blob, keys, max_size=exact or MAX_TEXT_FILE)
    if meta.kind != "wal" or meta.name != wal.name:
        raise IntegrityError(f"object holds {meta.kind} {meta.name!r}, not {wal.name}")
    if meta.system_identifier != ctx.system_identifier:
        raise IntegrityError(
            f"object belongs to system {meta.system_identifier}, not {ctx.system_identifier}"
        )
    if exact is not None:  # the page header must say what the name says, as on push
        validate_segment(wal, data, system_identifier=ctx.sysid, segment_size=exact)
    return data


def read_archived(
    settings: Settings, ctx: Cluster, wal: WalName
) -> tuple[bytes, str, list[str]] | None:
    """The verified bytes of an archived file from the first target with a good copy:
    (data, target, problems met on the way), or None when every target answered that it
    does not have it. Anything else about a copy (unreachable, unreadable, corrupt,
    malformed, a bug) is a problem: the next target is tried, and when no copy could be
    read StorageError is raised (EncryptionError when every copy found is encrypted with
    a key that is not configured) — never None, which would end a recovery early."""
    key = wal_key(ctx.name, wal)
    problems: list[str] = []
    key_problems: list[EncryptionError] = []
    for placement in ctx.placements:
        try:  # resolved one at a time: a placement with bad settings is only a problem
            (access,) = resolve(settings, ctx.name, [placement])
            if access.problem is not None or access.storage is None:
                raise access.problem or AssertionError("no storage")
            storage, keys = access.storage, access.keys
            blob = storage.get(key)
        except ObjectNotFound:
            # "not here" counts only from the storage the placement was set up on (an
            # unmounted file system answers "not found" to everything)
            try:
                check_claim(storage, ctx.name, ctx.system_identifier, placement.target_id)
            except Exception as exc:
                problems.append(f"{placement.target}: {_why(exc)}")
            continue
        except Exception as exc:  # MemoryError too: the next copy may do
            problems.append(f"{placement.target}: {_why(exc)}")
            continue
        try:
            data = open_copy(ctx, wal, blob, keys)
        except EncryptionError as exc:
            problems.append(f"{placement.target}: {exc}")
            key_problems.append(exc)
            continue
        except Exception as exc:
            problems.append(f"{placement.target}: {_why(exc)}")
            continue
        return data, placement.target, problems
    if problems and len(key_problems) == len(problems):
        raise EncryptionError(
            f"{wal.name}: no copy could be decrypted: " + "; ".join(problems),
            hint=key_problems[0].hint,
        )
    if problems:
        raise StorageError(f"{wal.name}: no good copy could be read: " + "; ".join(problems))
    return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, PgharborError):
        return str(exc)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def fetch(settings: Settings, cluster: str, name: str, dest: str) -> FetchResult:
    wal = parse_name(name)
    session = HotSession(settings, cluster)
    session.close()
    found = read_archived(settings, session.ctx, wal)
    if found is None:
        raise WalNotArchived(f"{wal.name} is not in the archive of cluster {cluster!r}")
    data, target, problems = found
    write_atomic(dest, data)
    if problems:  # degraded: PostgreSQL's log is where operators look
        print(
            f"pgharbor: warning: {wal.name} read from {target} after: " + "; ".join(problems),
            file=sys.stderr,
        )
    return FetchResult(wal.name, target, len(data), problems)
