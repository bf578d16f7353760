"""Where configuration meets an operation. Each placement is resolved once, at the edge
of an operation, into what the lower layers need: its storage and its keyring. The
stored format (envelope), the keys (crypto) and the chunk store take those, never the
settings.

Lean: the archive hot path resolves its placements here (crypto is imported only when
the cluster or a target has an encryption setting).
"""

from __future__ import annotations

from pgharbor.plain import FrozenRecord
from pgharbor.storage.factory import open_storage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Final

    from pgharbor.backup.chunks import ChunkCodec
    from pgharbor.crypto import Keyring
    from pgharbor.errors import PgharborError
    from pgharbor.model import Placement
    from pgharbor.settings import Settings
    from pgharbor.storage.base import Storage


def keyring(settings: Settings, cluster: str, target: str | None = None) -> Keyring | None:
    """The keys of ``cluster`` on ``target`` (see crypto.keyring), None when neither has
    an encryption setting (then pgharbor.crypto is not even imported)."""
    if not settings.encryption_configured(cluster, target):
        return None
    from pgharbor import crypto

    table = settings.targets.get(target, {}) if target is not None else None
    return crypto.keyring(cluster, settings.cluster_options(cluster), target, table)


class Access(FrozenRecord):
    """One placement, resolved: its storage (None with ``problem`` when the target's
    settings are wrong: that copy fails, not the operation) and its keyring."""

    __slots__ = ("placement", "storage", "keys", "problem")  # noqa: RUF023
    placement: Final[Placement]
    storage: Final[Storage | None]
    keys: Final[Keyring | None]
    problem: Final[PgharborError | None]

    def __init__(
        self,
        placement: Placement,
        storage: Storage | None,
        keys: Keyring | None,
        problem: PgharborError | None = None,
    ) -> None:
        self.placement = placement
        self.storage = storage
        self.keys = keys
        self.problem = problem

    @property
    def target(self) -> str:
        return self.placement.target


def resolve(settings: Settings, cluster: str, placements: Iterable[Placement]) -> list[Access]:
    """Every placement's storage (opened: no I/O yet) and keyring. A key that cannot be
    loaded stops the operation (nothing may be written unencrypted by mistake); a bad
    target option only marks that placement."""
    from pgharbor.errors import PgharborError

    out = []
    for p in placements:
        keys = keyring(settings, cluster, p.target)
        try:
            storage: Storage | None = open_storage(p.url, settings.target_options(p.target))
            problem = None
        except PgharborError as exc:
            storage, problem = None, exc
        out.append(Access(p, storage, keys, problem))
    return out


def chunk_codec(
    settings: Settings, cluster: str, targets: Iterable[str], *, writing: bool = True
) -> ChunkCodec:
    """The chunk codec for ``cluster`` on ``targets`` (with no target: the cluster's own
    keys), with the configured compression."""
    from pgharbor.backup.chunks import ChunkCodec

    names = list(targets)
    rings = {t: keyring(settings, cluster, t) for t in names} or {"": keyring(settings, cluster)}
    return ChunkCodec.for_keys(
        cluster, rings, settings.compression, settings.compression_level, writing=writing
    )
