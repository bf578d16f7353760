"""The archive hot path's commands, parsed by hand (no CLI framework on this path):

wal push [--async] CLUSTER PATH     archive_command
wal fetch CLUSTER NAME DEST         restore_command (with prefetch)
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
    "fetch": "wal fetch CLUSTER NAME DEST",
    "pusher": "wal pusher CLUSTER PGDATA",
    "prefetcher": "wal prefetcher CLUSTER PGDATA",
}
VERBS = tuple(USAGE)


def _args(verb: str, args: list[str], n: int) -> list[str]:
    if len(args) != n or any(a.startswith("-") for a in args[:1]):
        raise UsageError(f"usage: pgharbor [--catalog URL] [--config FILE] {USAGE[verb]}")
    return args


def in_data_directory() -> bool:
    """archive_command and restore_command run with the data directory as cwd."""
    return os.path.exists("PG_VERSION") and os.path.isdir("pg_wal")


def in_archive_recovery() -> bool:
    return (
        in_data_directory()
        and os.path.exists("recovery.signal")
        and not os.path.exists("standby.signal")
    )


def run(verb: str, settings: Settings, args: list[str]) -> None:
    if verb == "push":
        use_async = bool(args) and args[0] == "--async"
        cluster, path = _args(verb, args[1:] if use_async else args, 2)
        # Async only when the archive_command says so (cluster add/set print that
        # command for an async cluster): a cached setting could be stale, and switching
        # a cluster back to sync must take effect with the next reload.
        if use_async and in_data_directory():
            from pgharbor.archive.push import push_async

            push_async(settings, cluster, path)
        else:
            from pgharbor.archive.push import push

            push(settings, cluster, path)
    elif verb == "fetch":
        cluster, name, dest = _args(verb, args, 3)
        fetch_with_prefetch(settings, cluster, name, dest)
    elif verb == "pusher":
        from pgharbor.archive.pusher import run_pusher

        run_pusher(settings, *_args(verb, args, 2))
    else:
        from pgharbor.archive.prefetch import run_prefetcher

        run_prefetcher(settings, *_args(verb, args, 2))


def fetch_with_prefetch(settings: Settings, cluster: str, name: str, dest: str) -> None:
    from pgharbor.domain.wal import WalKind, parse_name

    wal = parse_name(name)
    prefetch = settings.prefetch_depth > 0 and wal.kind is WalKind.SEGMENT and in_data_directory()
    if prefetch:
        from pgharbor.archive.prefetch import Cache, note_fetched

        if Cache(os.getcwd()).take(name, dest):
            note_fetched(settings, cluster, os.getcwd(), name)
            return
    from pgharbor.archive.fetch import fetch  # not needed for a prefetched segment

    fetch(settings, cluster, name, dest)
    if prefetch:
        note_fetched(settings, cluster, os.getcwd(), name)
