"""A serve node: every ``scheduler_poll`` seconds it heartbeats, re-queues jobs whose
lease ran out, ticks the schedules, collects finished jobs and claims new ones up to its
limit; a thread renews the leases of its running jobs every third of a lease. Each job
runs in its own process (scheduler.worker). SIGTERM: stop claiming, let running jobs
finish for ``scheduler_stop_timeout`` seconds, hand the rest back, exit 0. SIGHUP:
reload the settings. No leader: nodes only meet in the catalog's rows.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry

from pgharbor import __version__
from pgharbor.catalog import db
from pgharbor.catalog.jobs import JobRepo, JobRow
from pgharbor.scheduler import health
from pgharbor.scheduler.tick import KINDS, tick
from pgharbor.services.context import Services
from pgharbor.settings import load_settings

log = logging.getLogger(__name__)


@dataclass
class NodeOptions:
    name: str
    host: str = "127.0.0.1"
    port: int = 8420
    max_jobs: int | None = None  # None: scheduler_max_jobs
    tls: health.Tls | None = None  # --tls-cert/--tls-key: https (required off loopback)


@dataclass
class Running:
    job: JobRow
    proc: subprocess.Popen[bytes]
    out: str
    renewed: float  # time.monotonic() of the last renewal
    lost: bool = False


@dataclass
class NodeReport:
    node: str
    jobs_done: int = 0
    jobs_failed: int = 0
    handed_back: list[int] = field(default_factory=list)


def _alive(host: str, pid: int) -> bool:
    if host != socket.gethostname():
        return True  # another host's node: only its heartbeat tells
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class Node:
    def __init__(self, svc: Services, opts: NodeOptions) -> None:
        self.svc = svc
        self.opts = opts
        self.settings = svc.settings
        self.repo = JobRepo(svc.catalog)
        self.running: dict[int, Running] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.finished = threading.Event()  # stops the lease thread
        self.reload_wanted = False
        self.last_loop = time.monotonic()
        self.report = NodeReport(opts.name)
        self.tmp = tempfile.mkdtemp(prefix="pgharbor-serve-")

    # -- limits from the settings (reloaded on SIGHUP) ---------------------------
    @property
    def max_jobs(self) -> int:
        return self.opts.max_jobs or self.settings.scheduler_max_jobs

    @property
    def lease(self) -> float:
        return self.settings.scheduler_lease

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload_wanted = True
        else:
            self.stopping.set()
        self.wake.set()

    # -- the loop ----------------------------------------------------------------
    def run(self) -> NodeReport:
        stale = max(self.lease, 3 * self.settings.scheduler_poll)
        self.repo.join(
            self.opts.name, socket.gethostname(), os.getpid(), __version__, stale, _alive
        )
        server = health.start(
            self,
            self.opts.host,
            self.opts.port,
            self._registry(),
            services=self.svc,
            tls=self.opts.tls,
        )
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._signal)
        renewer = threading.Thread(target=self._renew_loop, name="leases", daemon=True)
        renewer.start()
        watcher = threading.Thread(target=self._events_loop, name="events", daemon=True)
        watcher.start()
        log.info(
            "node %s serving on %s:%d (max %d jobs)",
            self.opts.name,
            self.opts.host,
            self.opts.port,
            self.max_jobs,
        )
        try:
            while not self.stopping.is_set():
                self.step()
                self.wake.wait(self.settings.scheduler_poll)
                self.wake.clear()
            self._shutdown()
        finally:
            self.finished.set()
            server.shutdown()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.report

    def step(self) -> None:
        try:
            if self.reload_wanted:
                self._reload()
            if not self.repo.node_heartbeat(self.opts.name):
                stale = max(self.lease, 3 * self.settings.scheduler_poll)
                self.repo.join(
                    self.opts.name, socket.gethostname(), os.getpid(), __version__, stale, _alive
                )
            for job_id in self.repo.requeue_expired(self.settings.scheduler_max_attempts):
                log.warning("job %d: its lease ran out; queued again", job_id)
            tick(self.repo, timedelta(seconds=self.settings.scheduler_grace))
            self._reap()
            while not self.stopping.is_set() and len(self.running) < self.max_jobs:
                job = self.repo.claim(
                    self.opts.name, self.lease, self.settings.scheduler_max_backups, KINDS
                )
                if job is None:
                    break
                self._start(job)
        except Exception as exc:  # the catalog is away: try again next tick
            log.error("tick failed: %s", " ".join(str(exc).split())[:300])
        self.last_loop = time.monotonic()

    def _reload(self) -> None:
        self.reload_wanted = False
        s = self.settings
        catalog = s.catalog if s.catalog_source == "option" else None
        self.settings = load_settings(catalog=catalog, config=s.config_file)
        log.info("settings reloaded")

    # -- jobs --------------------------------------------------------------------
    def _start(self, job: JobRow) -> None:
        out = os.path.join(self.tmp, f"job-{job.id}-{job.token}.json")
        spec = {
            "id": job.id,
            "kind": job.kind,
            "cluster": job.cluster,
            "scheduled": job.schedule_id is not None,
            "catalog": self.settings.catalog,
            "config": self.settings.config_file,
            "out": out,
            "parent": os.getpid(),
            "node": self.opts.name,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgharbor.scheduler.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
        with self.lock:
            self.running[job.id] = Running(job, proc, out, time.monotonic())
        log.info(
            "job %d: %s %s (%s) started, pid %d",
            job.id,
            job.kind,
            job.cluster,
            job.reason,
            proc.pid,
        )

    def _reap(self) -> None:
        with self.lock:
            done = [r for r in self.running.values() if r.lost or r.proc.poll() is not None]
        for r in done:
            if not r.lost:
                self._commit(r)
            with self.lock:
                self.running.pop(r.job.id, None)

    def _commit(self, r: Running) -> None:
        try:
            with open(r.out) as f:
                out: dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            out = {
                "ok": False,
                "result": None,
                "error": f"the job process exited with {r.proc.returncode}",
            }
        state = "done" if out["ok"] else "failed"
        if self.repo.finish(r.job.id, r.job.token, state, out["result"], out["error"]):
            log.info(
                "job %d: %s %s %s%s",
                r.job.id,
                r.job.kind,
                r.job.cluster,
                state,
                f": {out['error']}" if out["error"] else "",
            )
            self._note_job(r, out)
            if state == "done":
                self.report.jobs_done += 1
            else:
                self.report.jobs_failed += 1
        else:
            log.warning("job %d: its lease was lost: the outcome is not recorded", r.job.id)

    def _registry(self) -> CollectorRegistry:
        from pgharbor.monitor.metrics import FleetCollector

        ttl = self.settings.metrics_cache
        registry = CollectorRegistry(auto_describe=False)
        registry.register(FleetCollector(self.svc, ttl, 6 * ttl))
        return registry

    def _events_loop(self) -> None:
        """Every ``events_interval`` seconds, every check of every active cluster: their
        state changes become events (monitor/events.py)."""
        from pgharbor.monitor.registry import run_check

        while not self.finished.wait(self.settings.events_interval or 3600):
            if not self.settings.events_interval or self.stopping.is_set():
                continue
            try:
                run_check(self.svc, "all", None, fleet=True)
            except Exception as exc:
                log.error("checks for events failed: %s", " ".join(str(exc).split())[:300])

    def _note_job(self, r: Running, out: dict[str, Any]) -> None:
        from pgharbor.monitor import events

        try:
            events.note_job(
                self.svc, r.job.cluster_id, r.job.kind, out["ok"], out["result"], out["error"]
            )
        except Exception as exc:
            log.error("job %d: cannot record its event: %s", r.job.id, exc)

    def _renew_loop(self) -> None:
        while not self.finished.wait(self.lease / 3):
            self.renew()

    def renew(self) -> None:
        with self.lock:
            mine = [r for r in self.running.values() if not r.lost]
        for r in mine:
            try:
                kept: bool | None = self.repo.heartbeat(r.job.id, r.job.token, self.lease)
            except Exception as exc:
                kept = None
                log.error("job %d: cannot renew its lease: %s", r.job.id, str(exc).splitlines()[0])
            if kept:
                r.renewed = time.monotonic()
            elif kept is False or time.monotonic() - r.renewed > self.lease * 0.8:
                log.error("job %d: lease lost: stopping it, another node may run it", r.job.id)
                r.lost = True
                _stop(r.proc, 0)

    def _shutdown(self) -> None:
        timeout = self.settings.scheduler_stop_timeout
        log.info("stopping: %d running job(s), waiting up to %gs", len(self.running), timeout)
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            try:
                self._reap()
            except Exception as exc:
                log.error("collecting jobs failed: %s", exc)
            time.sleep(0.2)
        for r in list(self.running.values()):
            _stop(r.proc, 5)
            if not r.lost and self.repo.hand_back(r.job.id, r.job.token):
                self.report.handed_back.append(r.job.id)
                log.warning("job %d: handed back to the queue", r.job.id)
        self.running.clear()
        try:
            self.repo.leave(self.opts.name)
        except Exception as exc:
            log.error("cannot remove node %s from the catalog: %s", self.opts.name, exc)
        log.info("node %s stopped", self.opts.name)

    # -- health (the HTTP thread) ------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self.last_loop
        loop_ok = age < max(3 * self.settings.scheduler_poll, 15) and not self.stopping.is_set()
        engine, url = self.svc.catalog.engine, self.svc.catalog.url
        try:
            db.connect_check(engine, url)
            catalog = "ok"
        except Exception as exc:
            catalog = " ".join(str(exc).split())[:200]
        ok = loop_ok and catalog == "ok"
        return ok, {
            "status": "ok" if ok else "unavailable",
            "node": self.opts.name,
            "loop_age_s": round(age, 1),
            "catalog": catalog,
            "running_jobs": len(self.running),
        }


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serve(svc: Services, opts: NodeOptions) -> NodeReport:
    return Node(svc, opts).run()
