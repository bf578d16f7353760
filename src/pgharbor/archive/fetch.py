"""wal fetch: one WAL file from the first target that has a good copy, written
atomically to DEST. Used as PostgreSQL's restore_command."""

from __future__ import annotations

import os

from pgharbor import envelope
from pgharbor.archive.context import HotSession
from pgharbor.domain.wal import parse_name
from pgharbor.errors import (
    EncryptionError,
    IntegrityError,
    ObjectNotFound,
    StorageError,
    UsageError,
    WalNotArchived,
)
from pgharbor.plain import Record
from pgharbor.storage.factory import open_storage
from pgharbor.storage.layout import wal_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pgharbor.archive.context import ClusterContext
    from pgharbor.domain.wal import WalName
    from pgharbor.settings import Settings


class FetchResult(Record):
    __slots__ = ("name", "target", "size", "skipped")  # noqa: RUF023

    def __init__(self, name: str, target: str, size: int, skipped: list[str]) -> None:
        self.name = name
        self.target = target
        self.size = size
        self.skipped = skipped


def write_atomic(dest: str, data: bytes) -> None:
    folder = os.path.dirname(dest) or "."
    tmp = os.path.join(folder, f".pgharbor-fetch.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except OSError as exc:
        try:  # noqa: SIM105 - no contextlib import on the hot path
            os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"cannot write {dest}: {exc.strerror}") from None


def read_archived(
    settings: Settings, ctx: ClusterContext, wal: WalName
) -> tuple[bytes, str, list[str]] | None:
    """The verified bytes of an archived file from the first target with a good copy:
    (data, target, problems met on the way), or None when no target has it. Raises
    StorageError when copies exist or targets failed but nothing could be read, and
    EncryptionError when every copy found is encrypted with a key that is not configured."""
    key = wal_key(ctx.name, wal)
    problems: list[str] = []
    key_problems: list[EncryptionError] = []
    for placement in ctx.placements:
        keys = envelope.keyring_for(settings, ctx.name, placement.target)
        try:
            storage = open_storage(placement.url, settings.target_options(placement.target))
            blob = storage.get(key)
        except ObjectNotFound:
            continue
        except StorageError as exc:
            problems.append(f"{placement.target}: {exc}")
            continue
        try:
            meta, data = envelope.unseal(blob, keys)
            if meta.name != wal.name or meta.system_identifier != str(ctx.system_identifier):
                raise IntegrityError(
                    f"object holds {meta.name} of system {meta.system_identifier}, not "
                    f"{wal.name} of {ctx.system_identifier}"
                )
        except IntegrityError as exc:
            problems.append(f"{placement.target}: {exc}")
            continue
        except EncryptionError as exc:
            problems.append(f"{placement.target}: {exc}")
            key_problems.append(exc)
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


def fetch(settings: Settings, cluster: str, name: str, dest: str) -> FetchResult:
    wal = parse_name(name)
    session = HotSession(settings, cluster)
    session.close()
    found = read_archived(settings, session.ctx, wal)
    if found is None:
        raise WalNotArchived(f"{wal.name} is not in the archive of cluster {cluster!r}")
    data, target, problems = found
    write_atomic(dest, data)
    return FetchResult(wal.name, target, len(data), problems)
