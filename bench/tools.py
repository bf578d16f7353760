"""The tools compared, each configured and driven exactly as an operator would: pgharbor
(its CLI), pgBackRest (a config file and its CLI), and the plain baselines (``cp`` +
fsync, ``zstd -1`` + fsync) written as ``archive_command`` one-liners."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from cluster import Server
from common import BenchError, Timed, q, run, run_timed, say


@dataclass
class BackupRun:
    seconds: float
    logical_bytes: int
    stored_bytes: int
    maxrss_kib: int

    @property
    def mb_per_s(self) -> float:
        return self.logical_bytes / 1e6 / self.seconds


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _has_flag(help_text: str, flag: str) -> bool:
    """Whether a Click help text lists ``flag`` as an option."""
    return re.search(r"^\s*(?:-\w, )?" + re.escape(flag) + r"\b", help_text, re.M) is not None


def _printed_archive_command(output: str, setting: str = "archive_command") -> str:
    """The archive_command (or restore_command) line pgharbor printed (``… = '…'``)."""
    for line in output.splitlines():
        if line.strip().startswith(setting):
            value = line.split(" = ", 1)[1].strip()
            return value[1:-1].replace("''", "'")
    raise BenchError(f"pgharbor printed no {setting}:\n{output}")


def resident_processes(marker: str) -> list[int]:
    """Pids of pgharbor's resident helpers (``wal pusher`` / ``wal prefetcher``) started
    with our config file ``marker`` (detached by pgharbor itself, so not our children)."""
    return processes_with(marker, ("pusher", "prefetcher"))


def processes_with(marker: str, roles: tuple[str, ...]) -> list[int]:
    """Pids of processes with the word ``marker`` on their command line and a word that
    contains one of ``roles``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in argv]
        if any(marker in w for w in words) and any(r in w for w in words for r in roles):
            pids.append(int(proc.name))
    return pids


class Pgharbor:
    """One catalog (SQLite), one ``file://`` target, one cluster named ``bench``, all
    set up with the real CLI; settings in a TOML file passed with ``--config``."""

    cluster = "bench"

    def __init__(self, root: Path, exe: str, level: int) -> None:
        self.root, self.exe, self.level = root, exe, level
        self.repo = root / "repo"
        self.config = root / "pgharbor.toml"
        self.env = _clean_env()
        for folder in (self.root, self.repo, root / "state"):
            folder.mkdir(parents=True, exist_ok=True)
        base = (
            f'catalog = "sqlite:///{root}/catalog.db"\n'
            f'state_dir = "{root}/state"\n'
            'compression = "zstd"\n'
            f"compression_level = {level}\n"
        )
        # async archiving and prefetching (when this pgharbor has them) with their default
        # settings, except that the resident helpers exit after 10 s idle instead of 60/30 s,
        # so none is left running into the next measurement
        self.config.write_text(base + "async_idle_exit = 10\nprefetch_idle_exit = 10\n")
        probe = run_timed(self.cmd("target", "list"), env=self.env, check=False)
        self.has_prefetch = "unknown setting" not in probe.stderr
        if not self.has_prefetch:
            self.config.write_text(base)
        push_help = run(self.cmd("wal", "push", "--help"), env=self.env, check=False)
        set_help = run(self.cmd("cluster", "set", "--help"), env=self.env, check=False)
        self.async_setting = _has_flag(set_help, "--async")
        self.has_async = self.async_setting or _has_flag(push_help, "--async")
        say(
            f"pgharbor: async wal push {'yes' if self.has_async else 'no'}, "
            f"prefetching wal fetch {'yes' if self.has_prefetch else 'no'}"
        )
        self.archive_command = self.restore_command = ""

    def cmd(self, *args: str) -> list[str]:
        return [self.exe, "--config", str(self.config), *args]

    def version(self) -> str:
        return run(self.cmd("--version"), env=self.env).strip()

    def setup(self, server: Server) -> None:
        run(self.cmd("init"), env=self.env)
        run(self.cmd("target", "add", "disk", f"file://{self.repo}"), env=self.env)
        out = run(self.cmd("cluster", "add", self.cluster, "--dsn", server.dsn), env=self.env)
        self.archive_command = _printed_archive_command(out)
        self.restore_command = _printed_archive_command(out, "restore_command")
        run(self.cmd("placement", "add", self.cluster, "disk", "--priority", "1"), env=self.env)
        # compile the hot path once (a file that is not archived; a path that does not exist)
        missing = "0000000100000000000000FF"
        run(
            self.cmd("wal", "fetch", self.cluster, missing, str(self.root / "x")),
            env=self.env,
            check=False,
        )
        run(
            self.cmd("wal", "push", self.cluster, str(self.root / missing)),
            env=self.env,
            check=False,
        )
        say(f"pgharbor archive_command = {self.archive_command}")

    def set_async(self, on: bool) -> str | None:
        """Switch the cluster to async archiving (or back) as an operator does, and return
        the archive_command pgharbor prints for that mode (None: no async mode)."""
        if not self.has_async:
            return None
        if self.async_setting:
            mode = "--async" if on else "--sync"
            out = run(self.cmd("cluster", "set", self.cluster, mode), env=self.env)
            return _printed_archive_command(out)
        return self.archive_command.replace(
            " wal push ", " wal push --async " if on else " wal push "
        )

    def push_command(self, path: Path) -> str:
        return self.archive_command.replace("%p", q(path))

    def fetch_command(self, name: str, dest: Path) -> str:
        return " ".join(q(a) for a in self.cmd("wal", "fetch", self.cluster, name, str(dest)))

    def wait_residents_gone(self, timeout: float = 300) -> None:
        """Wait until the resident pusher/prefetcher of this setup has exited."""
        deadline = time.monotonic() + timeout
        while pids := resident_processes(str(self.config)):
            if time.monotonic() > deadline:
                raise BenchError(f"pgharbor resident helpers still running: {pids}")
            time.sleep(0.5)

    def backup(self) -> BackupRun:
        t = run_timed(self.cmd("backup", "create", self.cluster), env=self.env)
        info = json.loads(run(self.cmd("backup", "list", self.cluster, "--json"), env=self.env))[-1]
        if info["status"] != "ok":
            raise BenchError(f"pgharbor backup not ok: {info}")
        return BackupRun(t.seconds, info["logical_bytes"], info["stored_bytes"], t.maxrss_kib)

    def restore(self, pgdata: Path) -> Timed:
        return run_timed(self.cmd("restore", self.cluster, "--pgdata", str(pgdata)), env=self.env)


DEBIAN_PGBACKREST = "/usr/bin/pgbackrest"


class PgBackRest:
    """One stanza ``bench`` with a posix repository under the work folder. Asynchronous
    archiving is on in the file; the synchronous runs say ``--no-archive-async``. ``exe``:
    the pgbackrest binary (default Debian's); ``label`` names it in the results."""

    stanza = "bench"

    def __init__(
        self,
        root: Path,
        server: Server,
        level: int,
        cores: int,
        exe: str | None = None,
        label: str = "pgbackrest",
    ) -> None:
        self.root, self.server, self.level, self.cores = root, server, level, cores
        self.label = label
        self.conf = root / "pgbackrest.conf"
        self.repo = root / "repo"
        self.env = _clean_env()
        for sub in ("repo", "spool", "log", "lock"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.exe = exe or shutil.which("pgbackrest") or DEBIAN_PGBACKREST
        self.write_conf(server)

    def write_conf(self, server: Server) -> None:
        self.conf.write_text(
            "[global]\n"
            f"repo1-path={self.repo}\n"
            "repo1-retention-full=99\n"
            "compress-type=zst\n"
            f"compress-level={self.level}\n"
            f"process-max={self.cores}\n"
            "start-fast=y\n"
            "archive-async=y\n"
            f"spool-path={self.root / 'spool'}\n"
            f"log-path={self.root / 'log'}\n"
            f"lock-path={self.root / 'lock'}\n"
            "log-level-console=warn\n"
            "log-level-stderr=warn\n"
            "log-level-file=info\n"
            "\n"
            f"[{self.stanza}]\n"
            f"pg1-path={server.pgdata}\n"
            f"pg1-port={server.port}\n"
            f"pg1-socket-path={server.sockdir}\n"
        )

    def cmd(self, *args: str) -> list[str]:
        return [self.exe, f"--config={self.conf}", f"--stanza={self.stanza}", *args]

    def version(self) -> str:
        return run([self.exe, "version"], env=self.env).strip()

    def stanza_create(self) -> None:
        run(self.cmd("stanza-create"), env=self.env)

    def archive_command(self, asynchronous: bool) -> str:
        mode = [] if asynchronous else ["--no-archive-async"]
        return " ".join(q(a) for a in self.cmd(*mode, "archive-push")) + " %p"

    def push_command(self, path: Path) -> str:
        return self.archive_command(False).replace("%p", q(path))

    def fetch_command(self, name: str, dest: Path) -> str:
        return " ".join(
            q(a) for a in self.cmd("--no-archive-async", "archive-get", name, str(dest))
        )

    def restore_command(self, pgdata: Path, asynchronous: bool) -> str:
        """restore_command as ``restore`` writes it (``%f`` ``%p``), for the data
        directory ``pgdata``; asynchronous: the archive-get queue in the spool."""
        mode = [] if asynchronous else ["--no-archive-async"]
        argv = self.cmd(f"--pg1-path={pgdata}", *mode, "archive-get")
        return " ".join(q(a) for a in argv) + ' %f "%p"'

    def async_running(self) -> bool:
        """Whether an asynchronous archive-push/-get process of this config still runs."""
        return bool(processes_with(str(self.conf), ("archive-push:async", "archive-get:async")))

    def backup(self, kind: str) -> BackupRun:
        t = run_timed(self.cmd(f"--type={kind}", "backup"), env=self.env)
        info = json.loads(run(self.cmd("--output=json", "info"), env=self.env))
        last = info[0]["backup"][-1]["info"]
        return BackupRun(t.seconds, last["size"], last["repository"]["delta"], t.maxrss_kib)

    def restore(self, pgdata: Path) -> Timed:
        """``restore`` to the end of the archive; pgBackRest writes its own restore_command
        (``archive-get``, asynchronous as configured)."""
        cmd = self.cmd(f"--pg1-path={pgdata}", "--type=default", "restore")
        return run_timed(cmd, env=self.env)


class Plain:
    """The baselines: what a hand-written ``archive_command`` costs. Both write to a
    temporary name, fsync it, rename it and fsync the folder (atomic and durable); the
    zstd one at the benchmark's level."""

    def __init__(self, root: Path, level: int = 3) -> None:
        self.level = level
        self.cp_dir, self.zstd_dir = root / "cp", root / "zstd"
        self.cp_dir.mkdir(parents=True, exist_ok=True)
        self.zstd_dir.mkdir(parents=True, exist_ok=True)

    def cp_command(self, path: Path) -> str:
        dest = self.cp_dir / path.name
        tmp = self.cp_dir / f".{path.name}.tmp"
        return (
            f"cp {q(path)} {q(tmp)} && sync {q(tmp)} && mv {q(tmp)} {q(dest)}"
            f" && sync {q(self.cp_dir)}"
        )

    def zstd_command(self, path: Path) -> str:
        dest = self.zstd_dir / f"{path.name}.zst"
        tmp = self.zstd_dir / f".{path.name}.zst.tmp"
        return (
            f"zstd -q -{self.level} -f {q(path)} -o {q(tmp)} && sync {q(tmp)} && mv {q(tmp)} {q(dest)}"
            f" && sync {q(self.zstd_dir)}"
        )


def zstd_version() -> str:
    return run(["zstd", "--version"]).strip()
