"""The archive hot path's commands, parsed by hand (no CLI framework on this path):

wal push [--async] CLUSTER PATH     archive_command
wal fetch [--strict] CLUSTER NAME DEST
                                    restore_command (with prefetch); --strict: exit 99
                                    for "not in the archive", for the restore_command's
                                    shell wrapper (see archive.prefetch)
wal pusher CLUSTER PGDATA           the resident async pusher (started on demand)
wal prefetcher CLUSTER PGDATA       the resident prefetcher (started on demand)
"""

from __future__ import annotations

import os

from pgharbor.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pgharbor.settings import Settings

USAGE = {
    "push": "wal push [--async] CLUSTER PATH",
    "fetch": "wal fetch [--strict] CLUSTER NAME DEST",
    "pusher": "wal pusher CLUSTER PGDATA",
    "prefetcher": "wal prefetcher CLUSTER PGDATA",
}
VERBS = tuple(USAGE)


def _args(verb: str, args: list[str], n: int) -> list[str]:
    if len(args) != n or any(a.startswith("-") for a in args[:1]):
        raise UsageError(f"usage: pgharbor [--catalog URL] [--config FILE] {USAGE[verb]}")
    return args


class LazySettings:
    """The settings, read when first needed: an async push of a file the pusher has
    archived and a prefetched fetch need none (no config file read, no settings spec
    imported); any problem with them is raised then, through the same exit policy."""

    __slots__ = ("_settings", "catalog", "config")

    def __init__(self, catalog: str | None, config: str | None) -> None:
        self.catalog, self.config = catalog, config
        self._settings: Settings | None = None

    def get(self) -> Settings:
        if self._settings is None:
            from pgharbor.settings import load_settings

            self._settings = load_settings(catalog=self.catalog, config=self.config)
        return self._settings


def in_data_directory() -> bool:
    """archive_command and restore_command run with the data directory as cwd."""
    return os.path.exists("PG_VERSION") and os.path.isdir("pg_wal")


def run(verb: str, lazy: LazySettings, args: list[str]) -> None:
    if verb == "push":
        use_async = bool(args) and args[0] == "--async"
        cluster, path = _args(verb, args[1:] if use_async else args, 2)
        # Async only when the archive_command says so (cluster add/set print that
        # command for an async cluster): a cached setting could be stale, and switching
        # a cluster back to sync must take effect with the next reload.
        if use_async and in_data_directory():
            from pgharbor.archive.push import push_async

            push_async(lazy, cluster, path)
        else:
            from pgharbor.archive.push import push

            push(lazy.get(), cluster, path)
    elif verb == "fetch":
        strict = bool(args) and args[0] == "--strict"
        cluster, name, dest = _args(verb, args[1:] if strict else args, 3)
        fetch_with_prefetch(lazy, cluster, name, dest)
    elif verb == "pusher":
        from pgharbor.archive.pusher import run_pusher

        run_pusher(lazy.get(), *_args(verb, args, 2))
    else:
        from pgharbor.archive.prefetch import run_prefetcher

        run_prefetcher(lazy.get(), *_args(verb, args, 2))


def fetch_with_prefetch(lazy: LazySettings, cluster: str, name: str, dest: str) -> None:
    """wal fetch: a prefetched copy when there is one, else the archive. Prefetching is
    only ever a shortcut: any trouble with its folder is a warning, never the answer. A
    prefetched copy is taken before the settings are read (only a prefetcher, which
    verified it, writes one); the prefetcher is started when prefetch_depth allows."""
    from pgharbor.domain.wal import WalKind, parse_name

    wal = parse_name(name)
    in_pgdata = wal.kind is WalKind.SEGMENT and in_data_directory()
    if in_pgdata:
        from pgharbor.archive.prefetch import take_prefetched

        if take_prefetched(os.getcwd(), name, dest):
            _note(lazy, cluster, name)
            return
    from pgharbor.archive.fetch import fetch  # not needed for a prefetched segment

    settings = lazy.get()
    note = in_pgdata and settings.prefetch_depth > 0
    if note:  # a prefetcher starts now, and fills the window while this one is read
        _note(lazy, cluster, name)
    fetch(settings, cluster, name, dest)


def _note(lazy: LazySettings, cluster: str, name: str) -> None:
    """Move the prefetch window on (best effort: DEST is already written)."""
    import sys

    from pgharbor.archive.prefetch import note_fetched

    try:
        note_fetched(lazy, cluster, os.getcwd(), name)
    except Exception as exc:
        print(f"pgharbor: warning: prefetch not started: {exc}", file=sys.stderr)
