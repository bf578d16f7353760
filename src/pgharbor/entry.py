"""The ``pgharbor`` console script.

``wal push`` and ``wal fetch`` run once per WAL segment as PostgreSQL's archive and
restore commands, so they take a lean path: options parsed by hand, no CLI framework,
no ORM. Everything else goes to the Click application in pgharbor.cli.
"""

from __future__ import annotations

import sys

_GLOBAL_WITH_VALUE = ("--catalog", "--config")
_HOT_VERBS = ("push", "fetch", "pusher", "prefetcher")
# restore_command exit status > 125: PostgreSQL stops recovery (FATAL) instead of
# treating the file as missing
ABORT_RECOVERY = 126


def _split_globals(argv: list[str]) -> tuple[dict[str, str], list[str]] | None:
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name not in _GLOBAL_WITH_VALUE:
            return None
        if not eq:
            if i + 1 >= len(argv):
                return None
            value = argv[i + 1]
            i += 1
        opts[name[2:]] = value
        i += 1
    return opts, argv[i:]


def _fast(opts: dict[str, str], verb: str, args: list[str]) -> int:
    import os

    from pgharbor.archive import hotcli
    from pgharbor.errors import PgharborError, WalNotArchived

    try:
        from pgharbor.settings import load_settings

        settings = load_settings(catalog=opts.get("catalog"), config=opts.get("config"))
        hotcli.run(verb, settings, args)
        return 0
    except WalNotArchived as exc:
        # the normal answer at the end of the archive and to timeline probes: quiet
        # unless asked, so PostgreSQL's log is not filled with it
        if os.environ.get("PGHARBOR_VERBOSE"):
            print(exc.line(), file=sys.stderr)
        return exc.code
    except PgharborError as exc:
        print(exc.line(), file=sys.stderr)
        if verb == "fetch" and hotcli.in_archive_recovery():
            # Any exit below 126 reads as "not in the archive": a targeted recovery would
            # end early and promote short of its target. Stop recovery instead, loudly;
            # after the problem is fixed a restart resumes it.
            print("pgharbor: stopping recovery rather than ending it early", file=sys.stderr)
            return ABORT_RECOVERY
        return exc.code
    except KeyboardInterrupt:
        print("pgharbor: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # never a traceback in PostgreSQL's log; still a clear line
        return internal_error(exc)


def internal_error(exc: BaseException) -> int:
    """An unexpected failure: one line (the traceback only with PGHARBOR_DEBUG=1), exit 70."""
    import os

    if os.environ.get("PGHARBOR_DEBUG"):
        import traceback

        traceback.print_exc()
    print(f"pgharbor: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 70


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = _split_globals(argv)
    if split is not None:
        opts, rest = split
        fast = len(rest) >= 2 and rest[0] == "wal" and rest[1] in _HOT_VERBS
        if fast and not any(a in ("--help", "-h") for a in rest):
            return _fast(opts, rest[1], rest[2:])
    from pgharbor.cli.main import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
