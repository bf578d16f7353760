"""ssh:// backend: SFTP, ``ssh://USER@HOST:PORT/ROOT/PATH?key_file=..&known_hosts=..&timeout=..``.

Writes go to a temporary name in the destination folder, are fsynced (fsync@openssh.com;
a server without it, or refusing it, is refused: nothing is ever counted as stored that
was not made durable), then renamed with posix-rename@openssh.com, or hard-linked (hardlink@openssh.com) when
overwriting is not allowed, so an existing object is never replaced. SFTP cannot fsync a
folder: the durability of the new name rests on the server's filesystem.

Each process keeps one SSH connection per (user, host, port, key, known_hosts). An SFTP
session must not be shared by threads, so each operation borrows one from a small pool of
sessions over that connection. Host keys are checked against known_hosts, never learned.
"""

from __future__ import annotations

import atexit
import errno
import getpass
import os
import posixpath
import stat as st
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import paramiko
from paramiko import sftp as proto
from paramiko.message import Message
from paramiko.ssh_exception import NoValidConnectionsError

from pgharbor.errors import (
    ObjectExists,
    ObjectNotFound,
    PgharborError,
    StorageError,
    StoragePermissionDenied,
    StorageUnavailable,
    UsageError,
)
from pgharbor.settings_check import url_options
from pgharbor.storage.base import (
    ABANDONED_AFTER,
    TMP_MARK,
    ObjectInfo,
    abandoned,
    check_key,
    tmp_name,
)

T = TypeVar("T")
_CHUNK = 32768  # bytes per SFTP read/write request
_WINDOW = 64  # requests in flight
_MAX_SESSIONS = 8  # sshd allows 10 sessions per connection by default (MaxSessions)
_ConnKey = tuple[str, str, int, str | None, str]


@dataclass(frozen=True)
class SSHTarget:
    user: str
    host: str
    port: int
    root: str
    key_file: str | None
    known_hosts: str
    timeout: float

    @property
    def conn_key(self) -> _ConnKey:
        return (self.user, self.host, self.port, self.key_file, self.known_hosts)

    @property
    def hostkey_name(self) -> str:
        """The host's name in known_hosts: ``[host]:port`` unless the port is 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_ssh_url(url: str, options: Mapping[str, object] | None = None) -> SSHTarget:
    """Split an ssh:// URL. Options come from its query string, overridden by ``options``."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise UsageError(f"bad ssh URL {url!r}: use ssh://USER@HOST:PORT/ROOT/PATH")
    if parts.password is not None:
        raise UsageError("bad ssh URL: passwords are not supported, use a key (key_file)")
    try:
        port = parts.port or 22
    except ValueError:
        raise UsageError(f"bad ssh URL {url!r}: invalid port") from None
    root = "/" + unquote(parts.path).strip("/")
    if root == "/":
        raise UsageError(f"bad ssh URL {url!r}: no root folder, use ssh://USER@HOST:PORT/ROOT")
    base = url.partition("?")[0]
    query = parse_qsl(parts.query, keep_blank_values=True)
    opts = url_options("ssh", query, options or {}, f"target URL {base}")
    try:
        user = unquote(parts.username) if parts.username else getpass.getuser()
    except (OSError, KeyError):
        raise UsageError(f"{url}: no user in the URL and no current user name") from None
    key_file, known_hosts = opts.get("key_file"), opts["known_hosts"]
    return SSHTarget(user, parts.hostname, port, root, key_file, known_hosts, opts["timeout"])


class _UnknownHostKey(paramiko.SSHException):
    pass


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, host: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(host)


class _SFTP(paramiko.SFTPClient):
    """An SFTP session that knows the server's extensions."""

    extensions: dict[str, bytes]

    def _send_version(self) -> int:  # paramiko's version drops the extension list
        raw = cast(Any, self)
        init = Message()
        init.add_int(3)
        raw._send_packet(proto.CMD_INIT, init)
        kind, data = raw._read_packet()
        if kind != proto.CMD_VERSION:
            raise proto.SFTPError("Incompatible sftp protocol")
        reply = Message(data)
        version = reply.get_int()
        self.extensions = {}
        while reply.get_remainder():
            name = reply.get_text()  # (in `d[f()] = g()`, g runs first)
            self.extensions[name] = reply.get_binary()
        return version

    def call(self, kind: int, *args: object) -> Any:
        """Send one request and wait for its reply; an error status raises OSError."""
        return cast(Any, self)._request(kind, *args)

    def send(self, kind: int, *args: object) -> int:
        return int(cast(Any, self)._async_request(type(None), kind, *args))

    def reply(self, num: int) -> Any:
        return cast(Any, self)._read_response(num)

    def attrs(self, path: str) -> paramiko.SFTPAttributes | None:
        try:
            return self.stat(path)
        except FileNotFoundError:
            return None

    def isdir(self, path: str) -> bool:
        a = self.attrs(path)
        return a is not None and st.S_ISDIR(a.st_mode or 0)

    def write_new(self, path: str, data: bytes) -> None:
        """Create path (it must not exist), write data, fsync, close."""
        attrs = paramiko.SFTPAttributes()
        attrs.st_mode = 0o640
        flags = proto.SFTP_FLAG_WRITE | proto.SFTP_FLAG_CREATE | proto.SFTP_FLAG_EXCL
        kind, msg = self.call(proto.CMD_OPEN, path, flags, attrs)
        if kind != proto.CMD_HANDLE:
            raise proto.SFTPError("expected a file handle")
        handle = msg.get_binary()
        try:  # pipelined writes, every reply checked (paramiko's set_pipelined drops errors)
            pending: deque[int] = deque()
            for off in range(0, len(data), _CHUNK):
                chunk = data[off : off + _CHUNK]
                pending.append(self.send(proto.CMD_WRITE, handle, proto.int64(off), chunk))
                if len(pending) >= _WINDOW:
                    self.reply(pending.popleft())
            while pending:
                self.reply(pending.popleft())
            if "fsync@openssh.com" not in self.extensions:
                raise StorageError(
                    "the SFTP server does not offer fsync@openssh.com: a write could not be "
                    "made durable, so none is made (use an OpenSSH sftp-server or internal-sftp)"
                )
            try:
                self.call(proto.CMD_EXTENDED, "fsync@openssh.com", handle)
            except OSError as exc:
                raise StorageError(
                    f"the SFTP server refused fsync@openssh.com ({exc}): a write that cannot "
                    "be made durable does not count"
                ) from None
        except BaseException:
            with suppress(Exception):
                self.call(proto.CMD_CLOSE, handle)
            raise
        self.call(proto.CMD_CLOSE, handle)  # close errors matter: NFS reports write errors here

    def replace(self, tmp: str, path: str) -> None:
        """Rename tmp to path, replacing it: atomic with posix-rename; plain SFTP can only
        remove, then rename (readers may briefly miss path; racing writers try again)."""
        if "posix-rename@openssh.com" in self.extensions:
            return self.posix_rename(tmp, path)
        for attempt in range(10):
            with suppress(FileNotFoundError):
                self.remove(path)
            try:
                return self.rename(tmp, path)
            except OSError:
                if attempt == 9 or self.attrs(path) is None:
                    raise

    def read_object(self, path: str, start: int = 0, length: int | None = None) -> bytes:
        with self.open(path, "rb") as f:
            attrs = f.stat()
            if st.S_ISDIR(attrs.st_mode or 0):
                raise FileNotFoundError(errno.ENOENT, "is a folder")
            size = attrs.st_size or 0
            end = size if length is None else min(size, start + length)
            # readv in request-sized pieces: a single read() of N bytes copies O(N**2).
            pieces = [(o, min(_CHUNK, end - o)) for o in range(start, end, _CHUNK)]
            return b"".join(f.readv(pieces, 256)) if pieces else b""


def _connect(t: SSHTarget, where: str) -> paramiko.SSHClient:
    pkey: paramiko.PKey | None = None
    if t.key_file:
        try:
            pkey = paramiko.PKey.from_path(t.key_file)
        except Exception as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise StoragePermissionDenied(
                f"{where}: authentication impossible: cannot use key file {t.key_file} ({why})"
            ) from None
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_RejectUnknown())
    try:
        if os.path.exists(t.known_hosts):
            client.get_host_keys().load(t.known_hosts)
    except Exception as exc:
        raise StorageError(f"{where}: cannot read known_hosts {t.known_hosts} ({exc})") from None
    started = time.monotonic()
    try:
        client.connect(
            t.host,
            t.port,
            username=t.user,
            pkey=pkey,
            allow_agent=pkey is None,
            look_for_keys=pkey is None,
            timeout=t.timeout,
            banner_timeout=t.timeout,
            auth_timeout=t.timeout,
            channel_timeout=t.timeout,
        )
        cast(paramiko.Transport, client.get_transport()).set_keepalive(30)
        return client
    except BaseException as exc:
        client.close()
        if not isinstance(exc, Exception):
            raise
        slow = time.monotonic() - started >= t.timeout * 0.9
        raise _connect_error(t, where, exc, slow) from None


def _connect_error(t: SSHTarget, where: str, exc: Exception, slow: bool) -> StorageError:
    name, kh = t.hostkey_name, t.known_hosts
    if isinstance(exc, _UnknownHostKey):
        scan = f"ssh-keyscan -p {t.port} {t.host}" if t.port != 22 else f"ssh-keyscan {t.host}"
        return StorageError(
            f"{where}: unknown host key for {name} (add it to {kh}: {scan} >> {kh})"
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return StorageError(
            f"{where}: host key for {name} does not match {kh}: the server's key changed or "
            f"someone is intercepting the connection (if expected: ssh-keygen -R '{name}' -f {kh})"
        )
    text = str(exc).lower()
    if (
        isinstance(exc, paramiko.SSHException)
        and "authentication" in text
        and "timeout" not in text
    ):
        return StoragePermissionDenied(
            f"{where}: authentication failed for {t.user} with "
            f"{t.key_file or 'the SSH agent and ~/.ssh/id_*'} (is the public key authorized?)"
        )
    cannot = f"{where}: cannot connect to {t.host}:{t.port}"
    if slow:  # paramiko reports banner and handshake timeouts in odd ways
        return StorageUnavailable(f"{cannot}: no answer within {t.timeout:g}s")
    if isinstance(exc, NoValidConnectionsError):
        return StorageUnavailable(f"{cannot}: connection refused")
    if isinstance(exc, OSError | EOFError | paramiko.SSHException):
        why = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or "timed out"
        return StorageUnavailable(f"{cannot}: {why}")
    return StorageError(f"{where}: ssh connection failed: {exc!r}")


class _Connection:
    """One SSH connection and its pool of SFTP sessions."""

    def __init__(self, t: SSHTarget, where: str) -> None:
        self.key, self.timeout, self.pid = t.conn_key, t.timeout, os.getpid()
        self.client = _connect(t, where)
        self._cond = threading.Condition()
        self._idle: list[_SFTP] = []
        self._count = 0

    def usable(self) -> bool:
        transport = self.client.get_transport()
        return self.pid == os.getpid() and transport is not None and transport.is_active()

    def _open(self) -> _SFTP:
        transport = self.client.get_transport()
        if transport is None:
            raise EOFError("connection closed")
        chan = transport.open_session(timeout=self.timeout)
        try:
            chan.settimeout(self.timeout)
            chan.invoke_subsystem("sftp")
            return _SFTP(chan)
        except BaseException:
            chan.close()
            raise

    @contextmanager
    def session(self) -> Iterator[_SFTP]:
        with self._cond:
            while not self._idle and self._count >= _MAX_SESSIONS:
                self._cond.wait()
            sftp = self._idle.pop() if self._idle else None
            self._count += sftp is None
        keep = False
        try:
            sftp = sftp or self._open()
            yield sftp
            keep = True
        except (PgharborError, FileNotFoundError, PermissionError):
            keep = True  # a clean error reply: the session is in a known state
            raise
        finally:
            with self._cond:
                chan = sftp.get_channel() if sftp else None
                if keep and sftp and chan and not chan.closed:
                    self._idle.append(sftp)
                else:
                    self._count -= 1
                    if sftp:
                        sftp.close()
                self._cond.notify()

    def close(self) -> None:
        if self.pid == os.getpid():  # never touch a connection inherited through fork
            self.client.close()


_LOCK = threading.Lock()
_CONNECTIONS: dict[_ConnKey, _Connection] = {}
_CONNECT_LOCKS: dict[_ConnKey, threading.Lock] = {}


def _connection(t: SSHTarget, where: str) -> tuple[_Connection, bool]:
    """The cached connection (made if missing or dead), and whether it is new."""
    with _LOCK:
        connect_lock = _CONNECT_LOCKS.setdefault(t.conn_key, threading.Lock())
    with connect_lock:
        with _LOCK:
            conn = _CONNECTIONS.get(t.conn_key)
        if conn is not None and conn.usable():
            return conn, False
        if conn is not None:
            _forget(conn)
        conn = _Connection(t, where)
        with _LOCK:
            _CONNECTIONS[t.conn_key] = conn
        return conn, True


def _forget(conn: _Connection) -> None:
    with _LOCK:
        if _CONNECTIONS.get(conn.key) is conn:
            del _CONNECTIONS[conn.key]
    conn.close()


@atexit.register
def close_all() -> None:
    """Close every cached connection (at exit, or in tests)."""
    with _LOCK:
        conns = list(_CONNECTIONS.values())
        _CONNECTIONS.clear()
    for conn in conns:
        conn.close()


class SSHStorage:
    def __init__(self, url: str, **options: object) -> None:
        self.url = url
        self.target = parse_ssh_url(url, options)
        self.root = self.target.root

    def __repr__(self) -> str:
        from pgharbor.storage.factory import shown_url

        return f"SSHStorage({shown_url(self.url)!r})"

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def _run(
        self, key: str, op: Callable[[_SFTP], T], retry: Callable[[], bool] = lambda: True
    ) -> T:
        """Run op on a pooled session, again on a new connection if a cached one has died."""
        for attempt in (1, 2):
            conn, fresh = _connection(self.target, self.url)
            try:
                with conn.session() as sftp:
                    return op(sftp)
            except PgharborError:
                raise
            except Exception as exc:
                lost = (TimeoutError, EOFError, ConnectionError, paramiko.SSHException)
                if not isinstance(exc, lost) and conn.usable():
                    raise self._error(exc, key) from exc
                _forget(conn)
                if attempt == 1 and not fresh and retry():
                    continue
                why = str(exc) or type(exc).__name__
                raise StorageUnavailable(f"{self.url} ({key}): connection lost: {why}") from exc
        raise AssertionError("unreachable")

    def _error(self, exc: Exception, key: str) -> StorageError:
        where = f"{self.url} ({key})"
        if isinstance(exc, FileNotFoundError):
            return ObjectNotFound(f"{where}: no such object")
        if isinstance(exc, PermissionError):
            return StoragePermissionDenied(f"{where}: permission denied")
        return StorageError(f"{where}: {exc}")

    def _root_missing(self) -> StorageUnavailable:
        return StorageUnavailable(f"{self.url}: target root {self.root} does not exist")

    def _makedirs(self, sftp: _SFTP, folder: str) -> None:
        missing: list[str] = []
        while folder != self.root and not sftp.isdir(folder):
            missing.append(folder)
            folder = posixpath.dirname(folder)
        if missing and not sftp.isdir(self.root):
            raise self._root_missing()
        for d in reversed(missing):
            try:
                sftp.mkdir(d, 0o750)
            except OSError:
                if not sftp.isdir(d):  # else another writer made it: fine
                    raise

    def put(self, key: str, data: bytes, *, overwrite: bool = True) -> None:
        path = self._path(key)
        folder, name = path.rsplit("/", 1)
        exists = ObjectExists(f"{self.url} ({key}): object exists")
        committing = False
        tmps: list[str] = []  # one per attempt: a lost connection can leave one behind

        def op(sftp: _SFTP) -> None:
            nonlocal committing
            self._makedirs(sftp, folder)
            if not overwrite and sftp.attrs(path) is not None:
                raise exists
            tmp = f"{folder}/{tmp_name(name)}"
            tmps.append(tmp)
            renamed = link = False
            try:
                sftp.write_new(tmp, bytes(data))
                committing = True
                if overwrite:
                    sftp.replace(tmp, path)
                else:  # a hard link, or a plain SFTP rename: neither replaces a file
                    link = "hardlink@openssh.com" in sftp.extensions
                    try:
                        if link:
                            sftp.call(proto.CMD_EXTENDED, "hardlink@openssh.com", tmp, path)
                        else:
                            sftp.rename(tmp, path)
                    except OSError:
                        if sftp.attrs(path) is not None:
                            raise exists from None
                        raise
                renamed = not link
            finally:
                for t in tmps[:-1] if renamed else tmps:
                    with suppress(Exception):
                        sftp.remove(t)

        # After a lost connection, a retried exclusive put could find its own object.
        self._run(key, op, retry=lambda: overwrite or not committing)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        return self._run(key, lambda sftp: sftp.read_object(path))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(key)
        return self._run(key, lambda sftp: sftp.read_object(path, start, length))

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)

        def op(sftp: _SFTP) -> ObjectInfo | None:
            attrs = sftp.attrs(path)
            if attrs is None and not sftp.isdir(self.root):
                raise self._root_missing()
            if attrs is None or st.S_ISDIR(attrs.st_mode or 0):
                return None
            return ObjectInfo(key, attrs.st_size or 0)

        return self._run(key, op)

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def _walk(self, sftp: _SFTP, prefix: str) -> Iterator[tuple[str, Any]]:
        """(folder relative to the root, entry) for every file in the folders that can
        hold keys starting with prefix, temporaries included."""
        if not sftp.isdir(self.root):
            raise self._root_missing()
        folder = prefix.rpartition("/")[0]  # walk only the folder that can hold prefix
        todo = [folder]
        while todo:
            rel = todo.pop()
            path = f"{self.root}/{rel}" if rel else self.root
            if rel and rel == folder and not sftp.isdir(path):
                continue
            for e in sftp.listdir_attr(path):
                name = f"{rel}/{e.filename}" if rel else e.filename
                if st.S_ISDIR(e.st_mode or 0):
                    if (name + "/").startswith(prefix[: len(name) + 1]):
                        todo.append(name)
                else:
                    yield rel, e

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        def op(sftp: _SFTP) -> list[ObjectInfo]:
            found: list[ObjectInfo] = []
            for rel, e in self._walk(sftp, prefix):
                name = f"{rel}/{e.filename}" if rel else e.filename
                if (
                    not e.filename.startswith(TMP_MARK)
                    and st.S_ISREG(e.st_mode or 0)
                    and name.startswith(prefix)
                ):
                    found.append(ObjectInfo(name, e.st_size or 0))
            return sorted(found, key=lambda o: o.key)

        return iter(self._run(prefix, op))

    def sweep(self, prefix: str, max_age: float = ABANDONED_AFTER) -> int:
        def op(sftp: _SFTP) -> int:
            removed, now = 0, time.time()
            for rel, e in list(self._walk(sftp, prefix)):
                fn = e.filename
                key = f"{rel}/{fn[len(TMP_MARK) :]}" if rel else fn[len(TMP_MARK) :]
                # the server's clock dates the file: ages are only compared with max_age,
                # far longer than any plausible clock skew
                age = now - (e.st_mtime or now)
                if (
                    fn.startswith(TMP_MARK)
                    and key.startswith(prefix)
                    and abandoned(fn, age, max_age)
                ):
                    with suppress(FileNotFoundError):
                        sftp.remove(f"{self.root}/{rel}/{fn}" if rel else f"{self.root}/{fn}")
                    removed += 1
            return removed

        return self._run(prefix, op)

    def delete(self, key: str) -> None:
        path = self._path(key)

        def op(sftp: _SFTP) -> None:
            with suppress(FileNotFoundError):
                sftp.remove(path)

        self._run(key, op)

    def durable(self) -> bool:
        return bool(self._run("", lambda sftp: "fsync@openssh.com" in sftp.extensions))

    def space(self) -> tuple[int, int] | None:
        def op(sftp: _SFTP) -> tuple[int, int] | None:
            if "statvfs@openssh.com" not in sftp.extensions:
                return None
            _, msg = sftp.call(proto.CMD_EXTENDED, "statvfs@openssh.com", self.root)
            _bsize, frsize, blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
            return blocks * frsize, bavail * frsize

        return self._run("", op)

    def close(self) -> None:
        """Connections are shared by every storage of the process: see close_all()."""
        return None
