"""Encryption at rest: master keys, the sub-keys derived from them, and where they come from.

A master key is 32 random bytes, kept outside the catalog: in a key file (64 hex
characters, or the base64 of 32 bytes; ``pgharbor key generate FILE`` writes one, mode
0600) or in an environment variable holding the same text. Settings, per cluster and
optionally per target (a target's key wins for what is written to that target)::

    [clusters.main]
    encryption_key_file = "/etc/pgharbor/main.key"      # or encryption_key_env = "VAR"
    encryption_old_key_files = ["/etc/pgharbor/main-2025.key"]   # read only (rotation)
    encryption_old_key_envs = ["OLD_VAR"]                          # read only
    encryption_required = true    # default: true when a current key is set (see below)

From each master key HKDF-SHA256 derives independent sub-keys: an AES-256-GCM key for
contents, an HMAC-SHA256 key for chunk ids (equal chunks dedup under one key, ids say
nothing across keys), an HMAC-SHA256 key for content fingerprints (wal push's "already
archived?" check), and a public key id (8 bytes) that names the key in stored objects
and error messages without revealing anything about it.

Cheap to import: ``cryptography`` is loaded only when a key is actually used.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import stat

from pgharbor.errors import ConfigError, EncryptionError, IntegrityError
from pgharbor.plain import FrozenRecord, tidy_path
from pgharbor.settings_check import check, refuse_unknown
from pgharbor.settings_spec import ENCRYPTION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Final


ALGORITHM = "aes-256-gcm"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_BYTES = 8
_MAX_KEY_FILE = 4096
_FORMAT_HINT = "pgharbor key generate FILE writes a new one"


def _hkdf(master: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


class Key:
    """One master key's derived sub-keys. ``id`` is public (16 hex characters). Build
    with :func:`derive` (memoised: the hot path may load the same key per target)."""

    def __init__(self, master: bytes, source: str) -> None:
        if len(master) != KEY_BYTES:
            raise EncryptionError(f"{source}: a key is {KEY_BYTES} bytes, got {len(master)}")
        self.source = source
        self.id = _hkdf(master, b"pgharbor/v1 key id")[:KEY_ID_BYTES].hex()
        self._chunk = _hkdf(master, b"pgharbor/v1 chunk id hmac-sha256")
        self._content = _hkdf(master, b"pgharbor/v1 content fingerprint hmac-sha256")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(_hkdf(master, b"pgharbor/v1 contents aes-256-gcm"))

    def __repr__(self) -> str:  # never the key material
        return f"Key(id={self.id}, source={self.source!r})"

    def chunk_id(self, raw: bytes | memoryview) -> bytes:
        return hmac.new(self._chunk, raw, hashlib.sha256).digest()

    def fingerprint(self, sha256_hex: str) -> str:
        """A keyed fingerprint of contents whose SHA-256 is ``sha256_hex``: equal contents
        give equal fingerprints under one key; without the key it reveals nothing."""
        return hmac.new(self._content, sha256_hex.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, nonce: bytes, plain: bytes | memoryview, aad: bytes) -> bytes:
        return self._aead.encrypt(nonce, bytes(plain), aad)

    def decrypt(self, nonce: bytes, sealed: bytes | memoryview, aad: bytes, what: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(nonce, bytes(sealed), aad)
        except InvalidTag:
            raise IntegrityError(
                f"{what} does not authenticate with key {self.id}: the stored object is "
                "corrupt or was tampered with"
            ) from None


@functools.lru_cache(maxsize=16)
def derive(master: bytes, source: str) -> Key:
    return Key(master, source)


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


class Keyring(FrozenRecord):
    """The keys one cluster uses on one target: ``current`` encrypts what is written (None:
    write unencrypted), every key in ``keys`` (current and old ones) decrypts. With
    ``required``, anything read that is not encrypted is refused (a plaintext object
    planted on a target is never handed over)."""

    __slots__ = ("current", "keys", "setting", "required")  # noqa: RUF023
    current: Final[Key | None]
    keys: Final[Mapping[str, Key]]
    setting: Final[str]
    required: Final[bool]

    def __init__(
        self,
        current: Key | None,
        keys: Mapping[str, Key] | None = None,
        setting: str = "[clusters.NAME] encryption_key_file",
        required: bool | None = None,
    ) -> None:
        self.current = current
        self.keys = {} if keys is None else keys
        self.setting = setting
        # default: required once a key encrypts what is written
        self.required = current is not None if required is None else required

    def with_required(self, required: bool) -> Keyring:
        return Keyring(self.current, self.keys, self.setting, required)

    def get(self, key_id: str, what: str) -> Key:
        key = self.keys.get(key_id)
        if key is None:
            current = self.current.id if self.current else "none"
            old = sorted(k for k in self.keys if k != current)
            raise EncryptionError(
                f"{what} was encrypted with key {key_id}, the configured key is {current}"
                + (f" (old keys: {', '.join(old)})" if old else ""),
                hint=f"configure that key in {self.setting} (or as an old key to read with)",
            )
        return key

    def merged(self, other: Keyring) -> Keyring:
        """Readable with the keys of both; writes with this one's current key; requires
        encryption when either does."""
        return Keyring(
            self.current or other.current,
            {**other.keys, **self.keys},
            self.setting,
            self.required or other.required,
        )

    def refuse_plaintext(self, what: str) -> IntegrityError:
        return IntegrityError(
            f"{what} is not encrypted, and encryption is required ({self.setting}): "
            "refusing it (set encryption_required = false to read an archive from before "
            "encryption was turned on)"
        )


def parse_key(text: bytes, source: str) -> bytes:
    """A key from 64 hex characters or the base64 of 32 bytes (surrounding space ignored)."""
    s = text.strip()
    if len(s) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(s.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    import base64
    import binascii

    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == KEY_BYTES:
        return raw
    raise EncryptionError(
        f"{source} does not hold a key: expected 64 hex characters or the base64 of "
        f"{KEY_BYTES} bytes",
        hint=_FORMAT_HINT,
    )


def read_key_file(path: str | os.PathLike[str], setting: str) -> Key:
    """Load a key file, refusing one that others could read (as ssh does)."""
    p = tidy_path(os.path.expanduser(os.fspath(path)))
    where = f"encryption key file {p} (from {setting})"
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO must not block
    except FileNotFoundError:
        raise EncryptionError(f"{where} does not exist", hint=_FORMAT_HINT) from None
    except PermissionError:
        raise EncryptionError(f"{where} is not readable by this OS user") from None
    except OSError as exc:
        raise EncryptionError(f"cannot open {where}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise EncryptionError(f"{where} is not a regular file")
        if st.st_mode & 0o077:
            raise EncryptionError(
                f"{where} is accessible by group or others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): refusing to use it",
                hint=f"chmod 600 {p}",
            )
        data = os.read(fd, _MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE:
        raise EncryptionError(f"{where} is too large to be a key", hint=_FORMAT_HINT)
    return derive(parse_key(data, where), f"key file {p}")


def read_key_env(var: str, setting: str) -> Key:
    value = os.environ.get(var, "")
    if not value.strip():
        raise EncryptionError(
            f"environment variable {var} (named by {setting}) is not set",
            hint="set it in the environment of every pgharbor process, including PostgreSQL's "
            "archive_command and restore_command",
        )
    return derive(parse_key(value.encode(), f"environment variable {var}"), f"${var}")


def _required(table: Mapping[str, Any], section: str) -> bool | None:
    value = table.get("encryption_required")
    return None if value is None else bool(check(ENCRYPTION["encryption_required"], value, section))


def _table_ring(table: Mapping[str, Any], section: str) -> Keyring | None:
    refuse_unknown([k for k in table if k.startswith("encryption")], ENCRYPTION, section)
    if "encryption_key_file" in table and "encryption_key_env" in table:
        raise ConfigError(f"{section}: set encryption_key_file or encryption_key_env, not both")
    current: Key | None = None
    old: list[Key] = []
    for name, loader in (
        ("encryption_key_file", read_key_file),
        ("encryption_key_env", read_key_env),
        ("encryption_old_key_files", read_key_file),
        ("encryption_old_key_envs", read_key_env),
    ):
        if name not in table:
            continue
        value = check(ENCRYPTION[name], table[name], section)
        keys = [
            loader(v, f"{section} {name}") for v in ([value] if isinstance(value, str) else value)
        ]
        if name.startswith("encryption_old"):
            old += keys
        else:
            current = keys[0]
    if current is None and not old:
        if table.get("encryption_required"):
            raise ConfigError(f"{section}: encryption_required is set but no key is configured")
        return None
    ring = {k.id: k for k in old}
    if current is not None:
        ring[current.id] = current
    return Keyring(current, ring, f"{section} encryption_key_file or encryption_key_env")


def check_section(table: Mapping[str, Any], section: str) -> Keyring | None:
    """The keys a ``[clusters.NAME]`` or ``[targets.NAME]`` table configures, each read
    and checked (pgharbor config check), or None when it configures none."""
    required = _required(table, section)
    ring = _table_ring(table, section)
    return ring if ring is None or required is None else ring.with_required(required)


def keyring(
    cluster: str,
    cluster_table: Mapping[str, Any],
    target: str | None = None,
    target_table: Mapping[str, Any] | None = None,
) -> Keyring | None:
    """The keys of ``cluster`` on ``target`` from their settings tables (``[clusters.X]``
    and ``[targets.Y]`` of the config file), or None when neither has any configured.
    The target's key, when set, is the one written with; every key of both can read.
    Encryption is required (plaintext refused on read) when a current key is set, unless
    ``encryption_required = false``; an explicit setting of the target wins over the
    cluster's."""
    own = _table_ring(cluster_table, f"[clusters.{cluster}]")
    required = _required(cluster_table, f"[clusters.{cluster}]")
    if target is None:
        ring = own
    else:
        target_table = target_table or {}
        theirs = _table_ring(target_table, f"[targets.{target}]")
        ring = theirs.merged(own) if theirs is not None and own is not None else theirs or own
        explicit = _required(target_table, f"[targets.{target}]")
        required = required if explicit is None else explicit
    if ring is None or required is None:
        return ring
    return ring.with_required(required)


def generate_key_file(path: str | os.PathLike[str]) -> Key:
    """Write a new random key (64 hex characters) to a new file with mode 0600, durably
    (the file and its folder are fsynced)."""
    p = tidy_path(os.path.expanduser(os.fspath(path)))
    master = os.urandom(KEY_BYTES)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise EncryptionError(
            f"{p} exists: refusing to overwrite a key (data encrypted with it would be lost)"
        ) from None
    except OSError as exc:
        raise EncryptionError(f"cannot create {p}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, master.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    from pgharbor.storage.file import fsync_dir  # the one folder fsync there is

    fsync_dir(os.path.dirname(p) or ".")  # the new name is durable too, not only its bytes
    return Key(master, f"key file {p}")
