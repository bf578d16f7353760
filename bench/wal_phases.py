"""The WAL phases added for issue 13: restore_command over the whole corpus in order (the
replay feed), and the archiver behind (a backlog of ``.ready`` files drained by each
tool's asynchronous pusher); plus the timing wrapper of archive_command under load."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import BenchError, q, run, say, summary
from tools import PgBackRest, Pgharbor, processes_with

if TYPE_CHECKING:
    from phases import Phases

SEGMENT = 16 * 1024 * 1024
SLOT = "bench_backlog"


def timed_command(command: str, log: Path, ahead: str = "") -> str:
    """``command`` as archive_command, each call's start and end (bash's EPOCHREALTIME,
    no process of its own) appended to ``log``: the bash start-up is outside the timing.
    ``ahead``: a path (``%f`` in it) that exists when the tool's pusher already archived
    the file (pgharbor's done marker, pgBackRest's ``.ok`` in its spool), noted per call."""
    test = f"[ -e {ahead} ] && a=1; " if ahead else ""
    script = (
        f"a=0; {test}s=$EPOCHREALTIME; {{ {command} ; }}; r=$?; "
        f'echo "$s $EPOCHREALTIME $r $a" >> {q(log)}; exit $r'
    )
    return f"exec /bin/bash -c {q(script)}"


def call_times(log: Path, only_ahead: bool = False) -> dict[str, float]:
    """Median and p95 (ms) of the successful calls a timed_command logged (``only_ahead``:
    of those whose file the pusher had archived before the call)."""
    if not log.exists():
        return {}
    seconds = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "0" and (not only_ahead or parts[3:] == ["1"]):
            seconds.append(float(parts[1]) - float(parts[0]))
    return {**summary(seconds), "n": len(seconds)} if seconds else {}


def _timed_in(command: str, cwd: Path) -> float:
    began = time.perf_counter()
    proc = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, capture_output=True)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        text = (proc.stdout + proc.stderr).decode(errors="replace").strip()[-2000:]
        raise BenchError(f"exit {proc.returncode} in {cwd}: {command}\n{text}")
    return seconds


def _rounds_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds}
    for key in rounds[0]:
        if isinstance(rounds[0][key], (int, float)):
            out[key] = round(statistics.median(r[key] for r in rounds), 2)
    return out


class ReplayFeed:
    """restore_command over every corpus segment, in WAL order, one call after another as
    PostgreSQL's startup process makes them, each in a data directory of its own (what
    the prefetchers and pgBackRest's queue need: PG_VERSION, global/pg_control, pg_wal,
    recovery.signal) with ``%p`` = ``pg_wal/RECOVERYXLOG``. No replay between calls: this
    is the feed alone. Ways: ``cp`` from the corpus, pgharbor's printed restore_command
    (prefetching), each pgBackRest asynchronous (its queue) and synchronous."""

    def __init__(self, phases: Phases) -> None:
        self.p = phases
        self.root = phases.work / "feed"
        self.root.mkdir()

    def ways(self) -> dict[str, Any]:
        corpus = self.p.corpus
        ways: dict[str, Any] = {"cp": lambda _d: f"cp {q(corpus)}/%f %p"}
        self.once = {f"{key}_sync" for key in self.p.brs}  # one round: the sync ways
        if self.p.ph.restore_command:
            ways["pgharbor"] = lambda _d: self.p.ph.restore_command
        for key, br in self.p.brs.items():
            ways[f"{key}_async"] = lambda d, br=br: br.restore_command(d, True)
            ways[f"{key}_sync"] = lambda d, br=br: br.restore_command(d, False)
        return ways

    def pgdata(self, name: str) -> Path:
        d = self.root / name
        (d / "pg_wal").mkdir(parents=True)
        (d / "global").mkdir()
        shutil.copy(self.p.pg.pgdata / "PG_VERSION", d / "PG_VERSION")
        shutil.copy(self.p.pg.pgdata / "global" / "pg_control", d / "global" / "pg_control")
        (d / "recovery.signal").touch()
        return d

    def one(self, way: str, make: Any, round_no: int) -> dict[str, Any]:
        d = self.pgdata(f"{way}-{round_no}")
        command = make(d)
        dest = d / "pg_wal" / "RECOVERYXLOG"
        times = []
        for name in self.p.names:
            one = command.replace("%f", name).replace("%p", "pg_wal/RECOVERYXLOG")
            times.append(_timed_in(one, d))
            if dest.stat().st_size != SEGMENT:
                raise BenchError(f"{way} restored {name} with the wrong size")
            dest.unlink()
        s = summary(times)
        return {
            "segments": len(times),
            "segments_per_s": round(len(times) / s["total_s"], 2),
            "p50_ms": round(s["median_ms"], 1),
            "p95_ms": round(s["p95_ms"], 1),
            "max_ms": round(s["max_ms"], 1),
        }

    def settle(self) -> None:
        """No prefetcher or archive-get queue of a previous way still working."""
        deadline = time.monotonic() + 120
        while True:
            busy = processes_with("archive-get:async", ("archive-get",))
            busy += processes_with(str(self.p.ph.config), ("prefetcher",))
            if not busy or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        for br in self.p.brs.values():
            shutil.rmtree(br.root / "spool" / "archive", ignore_errors=True)

    def run(self) -> dict[str, Any]:
        ways = self.ways()
        order = list(ways)
        rounds: dict[str, list[dict[str, Any]]] = {w: [] for w in order}
        for round_no in range(self.p.size.rounds):
            turn = order[round_no % len(order) :] + order[: round_no % len(order)]
            for way in turn:
                if round_no and way in self.once:
                    continue
                self.settle()
                rounds[way].append(self.one(way, ways[way], round_no))
                say(f"replay feed, round {round_no + 1}, {way}: {rounds[way][-1]}")
        self.settle()
        shutil.rmtree(self.root, ignore_errors=True)
        return {w: _rounds_summary(r) for w, r in rounds.items()}


class BacklogDrain:
    """The archiver behind: archiving paused (an empty archive_command: PostgreSQL keeps
    every segment, marked ``.ready``; a replication slot keeps them from being removed)
    while pgbench writes ``backlog`` segments; then each tool's asynchronous
    archive_command is set and timed until no ``.ready`` file is left. Each way and round
    gets a fresh archive (a new pgharbor catalog and target, a new pgBackRest stanza
    repository), the ways taking turns; between them archiving is paused again and the
    same segments are marked ``.ready`` again (``.done`` renamed back)."""

    def __init__(self, phases: Phases) -> None:
        self.p = phases
        self.root = phases.work / "drain"
        self.root.mkdir()
        self.status = phases.pg.pgdata / "pg_wal" / "archive_status"

    def set_command(self, command: str) -> None:
        """archive_command changed now (a reload, without Server.reload's pause)."""
        pg = self.p.pg
        pg.configure({"archive_command": command})
        run([pg.bin("pg_ctl"), "-D", str(pg.pgdata), "reload"], env=pg.env)

    def fill(self) -> list[str]:
        pg, want = self.p.pg, self.p.size.backlog
        pg.set_archive_command("")  # waits until everything before is archived
        pg.sql(f"SELECT pg_create_physical_replication_slot('{SLOT}', true)")
        began = time.monotonic()
        while pg.ready_count() < want:
            pg.pgbench(*self.p.load, "-T", "5")
        names = sorted(n[:-6] for n in os.listdir(self.status) if n.endswith(".ready"))
        say(f"backlog: {len(names)} segments in {time.monotonic() - began:.0f} s")
        return names

    def mark_ready(self, names: list[str]) -> None:
        for name in names:
            done = self.status / f"{name}.done"
            if done.exists():
                done.rename(self.status / f"{name}.ready")
        spool = self.p.pg.pgdata / "pg_wal" / "pgharbor-spool"
        for sub in ("done", "failed"):
            shutil.rmtree(spool / sub, ignore_errors=True)

    def ahead_marker(self, way: str, round_no: int | str) -> str:
        """What exists when the way's pusher archived %f before the call (the done
        marker; pgBackRest's ``.ok`` in the spool of that round's stanza)."""
        if way == "pgharbor":
            return "pg_wal/pgharbor-spool/done/%f"
        spool = self.root / f"{way}-{round_no}" / "spool"
        return q(spool / "archive" / PgBackRest.stanza / "out") + "/%f.ok"

    def command(self, way: str, round_no: int | str) -> tuple[str, str]:
        """A fresh archive for one way and round: (its archive_command, its marker)."""
        root = self.root / f"{way}-{round_no}"
        if way == "pgharbor":
            ph = Pgharbor(root, self.p.ph.exe, self.p.ph.level)
            ph.setup(self.p.pg)
            command = ph.set_async(True)
            assert command is not None
            return command, str(ph.config)
        base = self.p.brs[way]
        br = PgBackRest(root, self.p.pg, base.level, base.cores, base.exe, way)
        br.stanza_create()
        return br.archive_command(True), str(br.conf)

    def wait_quiet(self, marker: str) -> None:
        deadline = time.monotonic() + 300
        roles = ("pusher", "archive-push:async")
        while processes_with(marker, roles):
            if time.monotonic() > deadline:
                raise BenchError(f"asynchronous archiving of {marker} still running")
            time.sleep(0.25)

    def drain(self, way: str, names: list[str], command: str, marker: str) -> float:
        """Seconds from setting ``command`` until no ``.ready`` file is left."""
        self.mark_ready(names)
        if self.p.pg.ready_count() < len(names):
            raise BenchError("the backlog's segments are not all .ready again")
        began = time.monotonic()
        self.set_command(command)
        while self.p.pg.ready_count():
            if time.monotonic() - began > 900:
                raise BenchError(f"{way} did not drain the backlog")
            time.sleep(0.05)
        seconds = time.monotonic() - began
        self.set_command("")
        self.wait_quiet(marker)
        return seconds

    def run(self) -> dict[str, Any]:
        if not self.p.ph.has_async:
            return {}
        names = self.fill()
        ways = ["pgharbor", *self.p.brs]
        rounds: dict[str, list[dict[str, Any]]] = {w: [] for w in ways}
        latency: dict[str, Any] = {}
        try:
            for round_no in range(self.p.size.rounds):
                turn = ways[round_no % len(ways) :] + ways[: round_no % len(ways)]
                for way in turn:
                    command, marker = self.command(way, round_no)
                    seconds = self.drain(way, names, command, marker)
                    one = {
                        "segments": len(names),
                        "seconds": round(seconds, 2),
                        "segments_per_s": round(len(names) / seconds, 2),
                        "loadavg": round(os.getloadavg()[0], 2),
                    }
                    rounds[way].append(one)
                    say(f"backlog drain, round {round_no + 1}, {way}: {one}")
            # one more drain each, every archive_command call timed (not in segments/s:
            # the timing wrapper's bash start-up would be in it)
            for way in ways:
                command, marker = self.command(way, "timed")
                log = self.root / f"calls-{way}.txt"
                ahead = self.ahead_marker(way, "timed")
                self.drain(way, names, timed_command(command, log, ahead), marker)
                latency[way] = {
                    "all": call_times(log),
                    "ahead": call_times(log, only_ahead=True),
                }
                say(f"backlog drain, timed calls, {way}: {latency[way]}")
        finally:
            self.p.pg.sql(f"SELECT pg_drop_replication_slot('{SLOT}')")
            self.set_command(self.p.both_archive_command())  # archives what is left
            self.p.pg.wait_archived()
            shutil.rmtree(self.root, ignore_errors=True)
        out: dict[str, Any] = {"segments": len(names)}
        out.update({w: _rounds_summary(r) for w, r in rounds.items()})
        for way, calls in latency.items():
            out[way]["archive_command"] = calls
        return out
