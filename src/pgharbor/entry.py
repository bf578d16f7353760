"""The ``pgharbor`` console script: the one front door.

``wal push``, ``wal fetch`` and the resident helpers run once per WAL segment as
PostgreSQL's archive and restore commands, so they always take a lean path, whatever
global options come first: options parsed by hand, no CLI framework, no ORM. Everything
else goes to the Click application in pgharbor.cli. Both paths end in the one exit
policy of pgharbor.errors: in archive recovery, a ``wal fetch`` that fails for any
reason but "not in the archive" exits 126, so PostgreSQL stops recovery rather than
ending it early and promoting short of its target.

This module imports only ``sys`` and ``os`` at the top, so that even a failing import
of anything else is caught and goes through that policy.
"""

from __future__ import annotations

import os
import sys

_WITH_VALUE = ("--catalog", "--config")
_VERBOSE = ("-v", "--verbose")
_HOT_VERBS = ("push", "fetch", "pusher", "prefetcher")
_OUT_OF_BAND = ("-h", "--help", "--version")


def hot_command(argv: list[str]) -> tuple[dict[str, str], str, list[str], str | None] | None:
    """(global options, verb, the verb's arguments, a problem with the global options)
    when argv runs a hot ``wal`` verb; None for anything else (the Click CLI)."""
    opts: dict[str, str] = {}
    problem: str | None = None
    words: list[str] = []
    i = 0
    while i < len(argv) and len(words) < 2:
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            words.append(arg)
            continue
        if arg in _OUT_OF_BAND:
            return None
        name, eq, value = arg.partition("=")
        if name in _WITH_VALUE:
            if not eq:
                if i >= len(argv):
                    problem = problem or f"option {name} needs a value"
                    continue
                value = argv[i]
                i += 1
            opts[name[2:]] = value
        elif arg in _VERBOSE:
            opts["verbose"] = "1"
        else:
            problem = problem or f"no such global option: {arg}"
    if len(words) != 2 or words[0] != "wal" or words[1] not in _HOT_VERBS:
        return None
    rest = argv[i:]
    if any(a in ("-h", "--help") for a in rest):
        return None  # Click prints the help
    return opts, words[1], rest, problem


def in_archive_recovery() -> bool:
    """restore_command runs with the data directory as cwd: recovery.signal without
    standby.signal is archive recovery (a standby retries instead of ending early).
    When it cannot tell, it says yes: failing closed."""
    try:
        return (
            os.path.exists("PG_VERSION")
            and os.path.exists("recovery.signal")
            and not os.path.exists("standby.signal")
        )
    except Exception:
        return True


def _say(line: str) -> None:
    try:  # noqa: SIM105 - no contextlib import before the policy is in place
        print(line, file=sys.stderr)
    except Exception:  # stderr closed or full: the exit status still tells
        pass


def run_hot(opts: dict[str, str], verb: str, args: list[str], problem: str | None = None) -> int:
    """Run a hot verb and map whatever happens through the exit policy."""
    recovery = verb == "fetch" and in_archive_recovery()
    verbose = bool(opts.get("verbose") or os.environ.get("PGHARBOR_VERBOSE"))
    try:
        from pgharbor.archive import hotcli
        from pgharbor.errors import UsageError

        if problem is not None:
            raise UsageError(f"{problem}; usage: pgharbor {hotcli.USAGE[verb]}")
        early = verb == "push" and len(args) == 2  # a sync push: start on the segment now
        if early:
            from pgharbor.archive import early as ahead

            ahead.begin(args[1])
        settings = hotcli.LazySettings(opts.get("catalog"), opts.get("config"))
        if early:
            ahead.compress_started(settings.get(), ahead.push_threads())
        hotcli.run(verb, settings, args)
        return 0
    except BaseException as exc:  # every failure: one line, one policy, never a traceback
        return _failed(exc, verb, args, recovery, verbose)


def _failed(exc: BaseException, verb: str, args: list[str], recovery: bool, verbose: bool) -> int:
    try:
        from pgharbor import errors

        code = errors.exit_code(exc, abort_recovery=recovery)
        if isinstance(exc, errors.WalNotArchived):
            # the normal answer at the end of the archive and to timeline probes: quiet
            # unless asked, so PostgreSQL's log is not filled with it
            if verbose:
                _say(exc.line())
            return 99 if "--strict" in args else code
        _say(errors.error_line(exc))
        if os.environ.get("PGHARBOR_DEBUG"):
            import traceback

            traceback.print_exception(exc)
        if code == errors.ABORT_RECOVERY:
            _say("pgharbor: stopping recovery rather than ending it early")
    except BaseException:  # not even the errors module: fail closed in recovery
        return 126 if recovery else 70
    return code


def _leave() -> None:
    """A wal push or fetch that succeeded has nothing left to do (its files are durable,
    its catalog connection closed): skip the interpreter's teardown (~3-5 ms of every
    segment: module cleanup, a compression thread of an already-archived file)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # output that cannot be written is no failure here
        pass
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    script = argv is None  # the console script, not a caller in this process
    argv = sys.argv[1:] if argv is None else argv
    hot = hot_command(argv)
    if hot is not None:
        code = run_hot(*hot)
        if script and code == 0 and hot[1] in ("push", "fetch"):
            _leave()
        return code
    from pgharbor.cli.main import run

    return run(argv)


def check_main(argv: list[str] | None = None) -> int:
    """The ``check_pgharbor`` console script: ``pgharbor check`` as a monitoring plugin
    (global options may come first). --help and --version exit 3 (UNKNOWN), as the
    monitoring-plugins guidelines ask; so does any failure to run at all."""
    argv = sys.argv[1:] if argv is None else argv
    lead: list[str] = []
    while argv and (argv[0] in _VERBOSE or argv[0].split("=", 1)[0] in _WITH_VALUE):
        take = 1 if argv[0] in _VERBOSE or "=" in argv[0] else 2
        lead, argv = lead + argv[:take], argv[take:]
    try:
        from pgharbor.cli.main import run

        code = run([*lead, "check", *argv])
    except BaseException:
        print("PGHARBOR_CHECK UNKNOWN - the check could not run")
        return 3
    return 3 if any(a in _OUT_OF_BAND for a in argv) or code not in (0, 1, 2) else code


if __name__ == "__main__":
    sys.exit(main())
