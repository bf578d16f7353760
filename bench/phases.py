"""The measurements, in the order they run on the one primary (each phase leaves the
archive of both tools complete, so the restores can replay every corpus segment)."""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import PIPE, STDOUT
from typing import Any

from cluster import Server
from common import (
    BenchError,
    Size,
    fast_time,
    q,
    run_timed,
    say,
    segment_names,
    summary,
    tree_bytes,
)
from tools import BackupRun, PgBackRest, Pgharbor, Plain
from wal_phases import BacklogDrain, ReplayFeed, call_times, timed_command

SEGMENT = 16 * 1024 * 1024
NOT_IMPLEMENTED = "n/a (not implemented)"
#: The load: pgbench's TPC-B-like transactions, and one in 20 a batch job updating 1,000
#: consecutive accounts (TPC-B alone writes ~2 MB/s of WAL here: too little to matter).
BATCH_SQL = """\\set a random(1, 100000 * :scale - 1000)
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN :a AND :a + 999;
"""


def backup_row(b: BackupRun) -> dict[str, float | int]:
    return {
        "seconds": round(b.seconds, 2),
        "logical_bytes": b.logical_bytes,
        "stored_bytes": b.stored_bytes,
        "mb_per_s": round(b.mb_per_s, 1),
        "maxrss_mib": round(b.maxrss_kib / 1024, 1),
    }


class Phases:
    def __init__(
        self,
        work: Path,
        primary: Server,
        ph: Pgharbor,
        brs: list[PgBackRest],
        plain: Plain,
        size: Size,
        results: dict[str, Any],
    ) -> None:
        self.work, self.pg, self.ph, self.plain = work, primary, ph, plain
        #: every pgBackRest measured (Debian's, and --pgbackrest EXE), by result key
        self.brs = {br.label: br for br in brs}
        self.br = brs[0]
        self.size, self.r = size, results
        self.corpus = work / "corpus"
        self.corpus.mkdir()
        self.names: list[str] = []
        batch = work / "batch.sql"
        batch.write_text(BATCH_SQL)
        self.load = ["-n", "-c", "4", "-j", "2", "-b", "tpcb-like@19", "-f", f"{batch}@1"]

    def run_all(self) -> None:
        self.setup()
        self.full_backups()
        self.second_backups()
        self.make_corpus()
        self.archive_per_segment()
        self.fetch_per_segment()
        self.replay_feed()
        self.restores()
        if self.size.big_gb:
            self.big_backup()
        self.live_load()
        self.backlog_drain()

    def step(self, name: str) -> None:
        """Announce a phase; note the machine's load average (other work on the host)."""
        load = [round(x, 2) for x in os.getloadavg()]
        self.r.setdefault("loadavg", []).append([name, load])
        say(f"== {name} (load average {load[0]})")

    def both_archive_command(self) -> str:
        """During the backups every segment goes to both tools (each backup waits for its
        WAL in its own archive), synchronously."""
        return " && ".join(
            [self.ph.archive_command, *(br.archive_command(False) for br in self.brs.values())]
        )

    def setup(self) -> None:
        self.step(f"pgbench -i -s {self.size.scale}")
        t = time.monotonic()
        self.pg.pgbench("-i", "-q", "-s", str(self.size.scale))
        self.r["database_bytes"] = self.pg.database_bytes()
        say(f"database: {self.r['database_bytes'] / 1e9:.2f} GB in {time.monotonic() - t:.0f} s")
        self.ph.setup(self.pg)
        for br in self.brs.values():
            br.stanza_create()
        self.pg.set_archive_command(self.both_archive_command())

    def full_backups(self) -> None:
        self.step("full backups: pgharbor, pgBackRest, pg_basebackup")
        rows: dict[str, Any] = {}
        rows["pgharbor"] = backup_row(self.ph.backup())
        say(f"pgharbor: {rows['pgharbor']}")
        for key, br in self.brs.items():
            rows[key] = backup_row(br.backup("full"))
            say(f"{key}: {rows[key]}")
        dest = self.work / "basebackup"
        opts = f"-Ft -Z client-zstd:{self.br.level} -X none --checkpoint=fast".split()
        t = run_timed([self.pg.bin("pg_basebackup"), "-d", self.pg.dsn, "-D", str(dest), *opts])
        logical = self.r["database_bytes"]
        rows["pg_basebackup"] = backup_row(
            BackupRun(t.seconds, logical, tree_bytes(dest), t.maxrss_kib)
        )
        say(f"pg_basebackup: {rows['pg_basebackup']}")
        shutil.rmtree(dest)
        self.r["backup_full"] = rows

    def second_backups(self) -> None:
        rows = int(self.pg.sql("SELECT count(*) FROM pgbench_accounts"))
        self.step(f"second backups after updating {rows // 10} of {rows} pgbench_accounts rows")
        self.pg.sql(
            f"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= {rows // 10}"
        )
        self.pg.sql("CHECKPOINT")
        out: dict[str, Any] = {"changed_rows": rows // 10}
        out["pgharbor"] = backup_row(self.ph.backup())
        say(f"pgharbor: {out['pgharbor']}")
        for key, br in self.brs.items():
            out[key] = backup_row(br.backup("incr"))
            say(f"{key} incr: {out[key]}")
        self.r["backup_second"] = out

    def make_corpus(self) -> None:
        self.step(f"WAL corpus: pgbench until {self.size.segments} segments are archived")
        self.pg.set_archive_command(f"cp %p {q(self.corpus)}/%f")
        began = time.monotonic()
        while len(segment_names(self.corpus)) + self.pg.ready_count() < self.size.segments:
            self.pg.pgbench(*self.load, "-T", "10")
        self.pg.switch_wal()
        self.pg.wait_archived()
        # later WAL (checkpoints) goes to both archives again, not to the corpus
        self.pg.set_archive_command(self.both_archive_command())
        self.names = names = segment_names(self.corpus)
        seconds = time.monotonic() - began
        say(f"corpus: {len(names)} segments in {seconds:.0f} s")
        self.r["corpus"] = {"segments": len(names), "seconds": round(seconds, 1)}

    def archive_per_segment(self) -> None:
        """Every corpus segment through each tool's archive_command, the tools taking
        turns per segment (rotating who goes first), timed per invocation."""
        names = self.names
        commands: dict[str, Callable[[Path], str]] = {
            "pgharbor": self.ph.push_command,
            **{key: br.push_command for key, br in self.brs.items()},
            "cp_fsync": self.plain.cp_command,
            "zstd_fsync": self.plain.zstd_command,
        }
        n = len(commands)
        self.step(f"archive_command per segment, sync: {len(names)} segments x {n} tools")
        times: dict[str, list[float]] = {k: [] for k in commands}
        order = list(commands)
        for i, name in enumerate(names):
            for tool in order[i % n :] + order[: i % n]:
                times[tool].append(fast_time(commands[tool](self.corpus / name)))
        folders = {
            "pgharbor": self.ph.repo / self.ph.cluster,
            **{key: br.repo / "archive" for key, br in self.brs.items()},
            "cp_fsync": self.plain.cp_dir,
            "zstd_fsync": self.plain.zstd_dir,
        }
        stored = {tool: tree_bytes(folder, set(names)) for tool, folder in folders.items()}
        out: dict[str, Any] = {
            "segments": len(names),
            "wal_bytes": len(names) * SEGMENT,
            "zstd_level": self.plain.level,
        }
        for tool, values in times.items():
            out[tool] = {**summary(values), "repo_bytes": stored[tool]}
            say(f"{tool}: median {out[tool]['median_ms']:.0f} ms, p95 {out[tool]['p95_ms']:.0f} ms")
        self.r["archive_sync"] = out
        shutil.rmtree(self.plain.cp_dir)
        shutil.rmtree(self.plain.zstd_dir)

    def fetch_per_segment(self) -> None:
        names = self.names[:100]  # the replay feed below goes over all of them
        commands: dict[str, Callable[[str, Path], str]] = {
            "pgharbor": self.ph.fetch_command,
            **{key: br.fetch_command for key, br in self.brs.items()},
        }
        n = len(commands)
        self.step(f"restore_command per segment, sync: {len(names)} segments x {n} tools")
        dest = self.work / "fetched"
        dest.mkdir()
        times: dict[str, list[float]] = {k: [] for k in commands}
        order = list(commands)
        for i, name in enumerate(names):
            for tool in order[i % n :] + order[: i % n]:
                target = dest / name
                times[tool].append(fast_time(commands[tool](name, target)))
                if target.stat().st_size != SEGMENT:
                    raise BenchError(f"{tool} fetched {name} with the wrong size")
                target.unlink()
        self.r["fetch_sync"] = {tool: summary(v) for tool, v in times.items()}
        for tool, s in self.r["fetch_sync"].items():
            say(f"{tool}: median {s['median_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms")
        dest.rmdir()

    def restores(self) -> None:
        self.step("restore to a ready data directory, then replay the corpus")
        out: dict[str, Any] = {}
        for tool in ("pgharbor", *self.brs):
            base = self.work / f"restore-{tool}"
            base.mkdir()
            copy = Server(base / "data", base)
            if tool == "pgharbor":
                t = self.ph.restore(copy.pgdata)
                mode = "prefetch" if self.ph.has_prefetch else "sync"
            else:
                copy.pgdata.mkdir(mode=0o700)
                t = self.brs[tool].restore(copy.pgdata)
                mode = "async"
            auto = (copy.pgdata / "postgresql.auto.conf").read_text().splitlines()
            command = [ln for ln in auto if ln.startswith("restore_command")][-1]
            copy.own_settings()
            copy.configure({"archive_mode": "off", "shared_buffers": "512MB"})
            say(f"{tool}: restore {t.seconds:.1f} s; replaying ({mode} restore_command)")
            copy.start(wait=False)
            try:
                replay = copy.wait_recovered()
                segments = copy.restored_segments()
            finally:
                copy.stop("immediate")
                self.ph.wait_residents_gone()  # the prefetcher, when there is one
            out[tool] = {
                "restore_seconds": round(t.seconds, 2),
                "restore_maxrss_mib": round(t.maxrss_kib / 1024, 1),
                "replay_seconds": round(replay, 2),
                "replay_segments": segments,
                "segments_per_s": round(segments / replay, 2),
                "restore_command": mode,
                "restore_command_line": command,
            }
            say(f"{tool}: {out[tool]}")
            shutil.rmtree(base)
        self.r["restore"] = out

    def live_load(self) -> None:
        """The archive backlog while pgbench writes as fast as it can, for each way of
        archiving; the same pgbench run each time, the ways taking turns for each round."""
        runs: list[tuple[str, Callable[[], str | None]]] = [
            *(
                (f"{key}_async", lambda br=br: br.archive_command(True))
                for key, br in self.brs.items()
            ),
            ("pgharbor_sync", lambda: self.ph.archive_command),
            ("pgharbor_async", lambda: self.ph.set_async(True)),
        ]
        out: dict[str, Any] = {"load_seconds": self.size.load_seconds}
        for round_no in range(1, self.size.load_rounds + 1):
            for name, make_command in runs:
                command = make_command()
                if command is None:
                    out[name] = {"available": False, "note": NOT_IMPLEMENTED}
                    continue
                self.step(f"live load, round {round_no}, {self.size.load_seconds} s: {name}")
                say(f"archive_command = {command}")
                timings = self.work / f"archive-times-{name}-{round_no}.txt"
                self.pg.set_archive_command(timed_command(command, timings))
                self.pg.sql("CHECKPOINT")
                run = self.backlog_run()
                run["archive_command"] = call_times(timings)
                entry = out.setdefault(name, {"available": True, "archive_command": command})
                entry.setdefault("rounds", []).append(run)
                say(f"{name}: {run['tps']} tps, peak backlog {run['peak_backlog']}, "
                    f"drained {run['drain_seconds']} s after the load")  # fmt: skip
                if name == "pgharbor_async":
                    self.leave_async()
        for entry in out.values():
            if isinstance(entry, dict) and entry.get("rounds"):
                for key in ("peak_backlog", "drain_seconds", "tps", "archive_rate_seg_s"):
                    entry[key] = round(statistics.mean(r[key] for r in entry["rounds"]), 1)
                calls = [r["archive_command"] for r in entry["rounds"] if r["archive_command"]]
                if calls:
                    for key in ("median_ms", "p95_ms"):
                        entry[f"archive_command_{key}"] = round(
                            statistics.median(c[key] for c in calls), 1
                        )
        self.r["live_load"] = out

    def leave_async(self) -> None:
        """Back to sync archiving, as an operator would, then make sure no pusher is left:
        pgharbor reads the mode from its local cache on the database host, which ``cluster
        set --sync`` does not refresh (see docs/benchmarks.md), so one sync ``wal push``
        run outside the data directory refreshes it."""
        self.pg.set_archive_command(self.both_archive_command())
        self.ph.set_async(False)
        fast_time(self.ph.push_command(self.corpus / self.names[0]))
        self.ph.wait_residents_gone()

    def backlog_run(self) -> dict[str, Any]:
        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        began = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                samples.append((round(time.monotonic() - began, 2), self.pg.ready_count()))
                stop.wait(0.5)

        start_lsn = self.pg.sql("SELECT pg_current_wal_lsn()")
        archived0 = self.pg.archived_count()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        argv = self.pg.pgbench_argv(*self.load, "-T", str(self.size.load_seconds))
        bench = subprocess.Popen(argv, env=self.pg.env, stdout=PIPE, stderr=STDOUT)
        report_text = bench.communicate()[0].decode(errors="replace")
        if bench.returncode != 0:
            raise BenchError(f"pgbench failed: {report_text[-2000:]}")
        load_end = time.monotonic() - began
        wal = self.pg.sql(f"SELECT pg_current_wal_lsn() - '{start_lsn}'::pg_lsn")
        self.pg.switch_wal()
        self.pg.wait_archived()
        drained = time.monotonic() - began
        time.sleep(1.0)
        stop.set()
        sampler.join()
        archived = self.pg.archived_count() - archived0
        tps_lines = [ln for ln in report_text.splitlines() if ln.startswith("tps")]
        tps = round(float(tps_lines[0].split("=")[1].split()[0])) if tps_lines else 0
        return {
            "samples": samples,
            "wal_bytes": int(float(wal)),
            "segments_archived": archived,
            "tps": tps,
            "load_end_seconds": round(load_end, 1),
            "peak_backlog": max(n for _t, n in samples),
            "drain_seconds": round(drained - load_end, 1),
            "archive_rate_seg_s": round(archived / drained, 2),
        }

    def replay_feed(self) -> None:
        """restore_command over every corpus segment, in order, as PostgreSQL's startup
        process calls it (bench/wal_phases.py)."""
        self.step(f"restore_command over {len(self.names)} segments, in order")
        self.r["replay_feed"] = ReplayFeed(self).run()

    def backlog_drain(self) -> None:
        """The archiver behind: a backlog of .ready files, drained by each async pusher."""
        self.step(f"async archiving behind: a backlog of {self.size.backlog} segments")
        self.r["backlog_drain"] = BacklogDrain(self).run()

    def big_backup(self) -> None:
        """Peak RSS of a pgharbor backup of a bigger cluster: a second pgbench database
        brings the cluster to ``big_gb`` (its WAL is not archived: nothing needs it)."""
        missing = self.size.big_gb * 1e9 - self.pg.database_bytes()
        scale = max(0, math.ceil(missing / 15.6e6))
        self.step(f"peak RSS of a pgharbor backup of {self.size.big_gb:g} GB (+ scale {scale})")
        if scale:
            self.pg.set_archive_command("true")
            self.pg.sql("CREATE DATABASE big")
            self.pg.pgbench("-i", "-q", "-s", str(scale), db="big")
            self.pg.set_archive_command(self.both_archive_command())
        b = self.ph.backup()
        self.r["backup_big"] = {"database_bytes": self.pg.database_bytes(), **backup_row(b)}
        say(f"pgharbor big backup: {self.r['backup_big']}")
