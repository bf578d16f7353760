"""Leases on a target's chunk store: what keeps a garbage collection from freeing chunks
that a backup, a restore or a verification relies on.

    chunks/leases/<kind>.<host>-<pid>-<random>     one object per holder (JSON)

A lease names its kind, what holds it (``backup c1/20261201T…``), the host (and its boot
id), the process (pid and start time) and when it expires. ``backup``, ``restore`` and
``verify`` leases are shared: any number coexist. A ``gc`` lease is exclusive: it
coexists with no other lease.

Taking a lease is write-then-look: the holder first stores its own lease object (an
atomic, exclusive put), then lists the others. Of two operations that exclude each other
the one that stores second always sees the first, so at most one goes on; a holder that
sees a conflict removes its own object and fails with Busy, having changed nothing.
Storage is strongly consistent for this on every backend (a file system, SFTP, S3 since
2020).

A lease survives its holder's crash only as long as it can be proven alive: a lease of a
process on this host (same host name and boot id) is dead as soon as that process (pid
and start time) is gone; any lease is dead once its expiry is past by more than the
clock skew tolerated between hosts. A holder renews its lease (a thread) while it works,
and calls :meth:`Lease.check` right before each step that relies on the exclusion (a GC
before it frees anything, a backup before it writes its manifest): the lease must still
be there, fresh, and unchallenged, or the step is not taken (LeaseLost).

A lease that lapsed is lost for good: once its expiry has passed (the holder was stalled,
or could not renew), renewal stops, and a lease object removed by someone who saw it
dead is never written again. Others may have acted on its death meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from pgharbor import faultpoint
from pgharbor.errors import (
    Busy,
    LeaseLost,
    ObjectExists,
    ObjectNotFound,
    PgharborError,
    StorageError,
    UsageError,
)
from pgharbor.storage.base import HOST, Storage, process_gone
from pgharbor.storage.layout import LEASES

log = logging.getLogger(__name__)

PREFIX = LEASES
FORMAT = "pgharbor-lease/1"
SHARED = frozenset({"backup", "restore", "verify"})
EXCLUSIVE = frozenset({"gc"})
TTL = 600.0  # seconds a lease lives without renewal
RENEW_EVERY = 60.0  # how often a holder renews it
SKEW = 120.0  # clock difference between hosts that is tolerated


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The process's start time (clock ticks since boot), which tells it from a later
    process that got the same pid; "" where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b") ")[2].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return ""


BOOT_ID = _boot_id()


@dataclass(frozen=True)
class LeaseInfo:
    key: str
    kind: str
    owner: str
    host: str
    boot_id: str
    pid: int
    pid_start: str
    acquired: float
    expires: float

    def local(self) -> bool:
        """Held by a process of this host, in this boot."""
        return self.host == HOST and self.boot_id == BOOT_ID and bool(BOOT_ID)

    def alive(self, now: float) -> bool:
        if now > self.expires + SKEW:
            return False
        if self.local():
            if process_gone(self.pid):
                return False
            return not self.pid_start or _start_time(self.pid) in ("", self.pid_start)
        return True

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.acquired, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"{self.kind} lease of {self.owner} (host {self.host}, pid {self.pid}, since {since})"
        )


@dataclass(frozen=True)
class BadLease:
    """A lease object that cannot be read: it blocks a GC (fail closed), nothing else."""

    key: str
    reason: str

    def describe(self) -> str:
        return f"unreadable lease object {self.key} ({self.reason})"


def _parse(key: str, blob: bytes) -> LeaseInfo | BadLease:
    try:
        d = json.loads(blob)
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            return BadLease(key, "not a pgharbor lease")
        info = LeaseInfo(
            key=key,
            kind=str(d["kind"]),
            owner=str(d["owner"]),
            host=str(d["host"]),
            boot_id=str(d.get("boot_id", "")),
            pid=int(d["pid"]),
            pid_start=str(d.get("pid_start", "")),
            acquired=float(d["acquired"]),
            expires=float(d["expires"]),
        )
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        return BadLease(key, f"corrupt: {exc}"[:200])
    if info.kind not in SHARED | EXCLUSIVE:
        return BadLease(key, f"unknown kind {info.kind!r}")
    return info


def read_leases(storage: Storage) -> list[LeaseInfo | BadLease]:
    """Every lease object on the target (one vanishing while listed is skipped)."""
    found: list[LeaseInfo | BadLease] = []
    for key in [obj.key for obj in storage.list(PREFIX)]:
        try:
            blob = storage.get(key)
        except ObjectNotFound:  # released meanwhile
            continue
        found.append(_parse(key, blob))
    return found


class Lease:
    """One holder's lease on one target. Use as a context manager, or acquire() and
    release(); check() before relying on it."""

    def __init__(
        self,
        storage: Storage,
        kind: str,
        owner: str,
        *,
        ttl: float = TTL,
        renew_every: float = RENEW_EVERY,
        on_renew: Callable[[], None] | None = None,
    ) -> None:
        """``on_renew`` runs after each renewal (on the renewal thread): a heartbeat."""
        if kind not in SHARED | EXCLUSIVE:
            raise ValueError(f"unknown lease kind {kind!r}")
        self.storage, self.kind, self.owner = storage, kind, owner
        self.ttl, self.renew_every, self.on_renew = ttl, renew_every, on_renew
        self.key = f"{PREFIX}{kind}.{HOST}-{os.getpid()}-{os.urandom(4).hex()}"
        self.acquired = self.expires = 0.0
        self.held = False
        self._error: str | None = None
        self._lost: str | None = None  # why the lease lapsed: it is never renewed again
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- the object ----------------------------------------------------------------
    def _blob(self, acquired: float, expires: float) -> bytes:
        info = LeaseInfo(
            self.key,
            self.kind,
            self.owner,
            HOST,
            BOOT_ID,
            os.getpid(),
            _start_time(os.getpid()),
            acquired,
            expires,
        )
        d = {"format": FORMAT, **{k: v for k, v in asdict(info).items() if k != "key"}}
        return json.dumps(d, sort_keys=True).encode()

    def _write(self, *, first: bool) -> None:
        with self._lock:
            now = time.time()
            if first:
                self.acquired = now
            else:
                self._still_ours(now)
            expires = now + self.ttl
            self.storage.put(self.key, self._blob(self.acquired, expires), overwrite=not first)
            self.expires = expires

    def _still_ours(self, now: float) -> None:
        """Before a renewal: a lease that expired, or whose object is gone (removed by
        someone who saw it dead), is lost; renewing it would hide that."""
        if self._lost is None and now > self.expires:
            self._lost = (
                f"the {self.kind} lease of {self.owner} expired "
                f"(last renewal failed: {self._error or 'the process was stalled'})"
            )
        if self._lost is None and self.storage.stat(self.key) is None:
            self._lost = f"the {self.kind} lease {self.key} vanished"
        if self._lost is not None:
            raise LeaseLost(f"{self.storage.url}: {self._lost}")

    def _conflicts(self) -> list[LeaseInfo | BadLease]:
        """Live leases of others that exclude this one; dead ones are removed."""
        now = time.time()
        blocking: list[LeaseInfo | BadLease] = []
        for lease in read_leases(self.storage):
            if lease.key == self.key:
                continue
            if isinstance(lease, BadLease):
                if self.kind in EXCLUSIVE:
                    blocking.append(lease)
                continue
            if not lease.alive(now):
                log.info("%s: removing the dead %s", self.storage.url, lease.describe())
                try:
                    self.storage.delete(lease.key)
                except StorageError as exc:
                    log.warning("%s: cannot remove %s: %s", self.storage.url, lease.key, exc)
                continue
            if self.kind in EXCLUSIVE or lease.kind in EXCLUSIVE:
                blocking.append(lease)
        return blocking

    # -- life cycle ----------------------------------------------------------------
    def acquire(self) -> Lease:
        try:
            self._write(first=True)
        except ObjectExists:  # a random name taken: impossible in practice
            raise Busy(f"{self.storage.url}: lease {self.key} exists") from None
        try:
            faultpoint.point("lease.after_write")
            blocking = self._conflicts()
        except BaseException:
            self._remove()
            raise
        if blocking:
            self._remove()
            raise Busy(
                f"{self.storage.url}: cannot take a {self.kind} lease: "
                + "; ".join(b.describe() for b in blocking),
                hint="nothing was changed; try again when that is done",
            )
        self.held = True
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"lease-{self.kind}", daemon=True
        )
        self._thread.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                self._write(first=False)
                self._error = None
            except LeaseLost as exc:  # for good: check() reports it
                log.warning("%s", exc)
                return
            except Exception as exc:  # kept trying; check() reports it
                self._error = str(exc)
                log.warning("%s: renewing %s failed: %s", self.storage.url, self.key, exc)
                continue
            if self.on_renew is not None:
                try:
                    self.on_renew()
                except Exception as exc:  # a heartbeat elsewhere: the lease stays good
                    log.warning("%s: after renewing %s: %s", self.storage.url, self.key, exc)

    def check(self) -> None:
        """Right before a step that relies on the exclusion: the lease must still be
        this holder's, fresh (renewed now) and unchallenged by a lease that excludes
        it; otherwise LeaseLost, and the step must not be taken."""
        if not self.held:
            raise LeaseLost(f"{self.storage.url}: the {self.kind} lease is not held")
        try:
            self._write(first=False)  # LeaseLost if it expired or vanished
            blocking = self._conflicts()
        except PgharborError as exc:
            if isinstance(exc, LeaseLost):
                raise
            raise LeaseLost(
                f"{self.storage.url}: cannot confirm the {self.kind} lease: {exc.message}"
            ) from None
        if blocking:
            raise LeaseLost(
                f"{self.storage.url}: the {self.kind} lease of {self.owner} was challenged by "
                + "; ".join(b.describe() for b in blocking)
            )

    def _remove(self) -> None:
        try:
            self.storage.delete(self.key)
        except StorageError as exc:  # it expires by itself
            log.warning("%s: cannot remove lease %s: %s", self.storage.url, self.key, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.held:
            self.held = False
            self._remove()

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class LeaseGroup:
    """One operation's leases on several targets, taken all or none."""

    def __init__(self, leases: list[Lease]) -> None:
        self.leases = leases

    def acquire(self) -> LeaseGroup:
        taken: list[Lease] = []
        try:
            for lease in self.leases:
                taken.append(lease.acquire())
        except BaseException:
            for lease in taken:
                lease.release()
            raise
        return self

    def check(self) -> None:
        for lease in self.leases:
            lease.check()

    def release(self) -> None:
        for lease in self.leases:
            lease.release()

    def __enter__(self) -> LeaseGroup:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def refuse_root(command: str) -> None:
    """Commands that write a chunk store refuse to run as root: what root creates there
    (folders of packs, leases) the OS user that runs every other command cannot remove."""
    if os.geteuid() == 0:
        raise UsageError(
            f"{command} must not run as root: it would leave objects on file targets that "
            "the pgharbor user cannot delete",
            hint=f"runuser -u postgres -- pgharbor … {command} …",
        )


def holders(storage: Storage) -> list[LeaseInfo]:
    """The live leases on a target (for status and error messages)."""
    now = time.time()
    return [x for x in read_leases(storage) if isinstance(x, LeaseInfo) and x.alive(now)]
