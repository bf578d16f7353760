"""The self-describing format of every stored object.

    b"PGHARBR1" | header length (uint32 LE) | header (JSON, UTF-8) | payload

The header names the cluster (id, name, system identifier), the original size, the
SHA-256 of the original bytes and how the payload was transformed (compression,
encryption), so a target alone is enough to recover a cluster when the catalog is lost.

Encrypted (a key is configured for the cluster, see pgharbor.crypto)::

    b"PGHARBR1" | header length | public header (JSON) | AES-256-GCM(inner) + tag
    inner = inner header length (uint32 LE) | inner header (JSON) | payload

The public header keeps only what finds and decrypts the object: kind, name, cluster
name, id and system identifier, ``encryption``, ``key_id``, ``nonce`` and ``mac`` (a
keyed fingerprint of the contents, for wal push's "already archived?" check). Size,
SHA-256 and compression are in the inner header. Everything before the ciphertext
(magic, length, public header) is authenticated data: changing any of it fails.
"""

from __future__ import annotations

import _thread
import hashlib
import json
import os
import struct
import sys

from pgharbor.errors import EncryptionError, IntegrityError
from pgharbor.plain import FrozenRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    from pgharbor.crypto import Keyring

MAGIC = b"PGHARBR1"
_LEN = struct.Struct("<I")
PREFIX = len(MAGIC) + _LEN.size
HEAD_READ = 4096  # bytes to read to get the header of any object in one request


class Meta(FrozenRecord):
    __slots__ = (  # noqa: RUF023
        "kind",
        "name",
        "cluster",
        "cluster_id",
        "system_identifier",
        "size",
        "sha256",
        "compression",
        "encryption",
        "key_id",
        "nonce",
        "mac",
    )
    kind: Final[str]  # "wal", "descriptor", ...
    name: Final[str]
    cluster: Final[str]
    cluster_id: Final[str]
    system_identifier: Final[str]
    size: Final[int]  # -1 and "": hidden (the header of an encrypted object, not decrypted)
    sha256: Final[str]
    compression: Final[str]
    encryption: Final[str | None]
    key_id: Final[str | None]  # encrypted objects only
    nonce: Final[str | None]
    mac: Final[str | None]

    def __init__(
        self,
        kind: str,
        name: str,
        cluster: str,
        cluster_id: str,
        system_identifier: str,
        size: int = -1,
        sha256: str = "",
        compression: str = "none",
        encryption: str | None = None,
        key_id: str | None = None,
        nonce: str | None = None,
        mac: str | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.cluster = cluster
        self.cluster_id = cluster_id
        self.system_identifier = system_identifier
        self.size = size
        self.sha256 = sha256
        self.compression = compression
        self.encryption = encryption
        self.key_id = key_id
        self.nonce = nonce
        self.mac = mac

    def replace(self, **changes: Any) -> Meta:
        """A copy with ``changes`` applied (as dataclasses.replace)."""
        return Meta(**{**self.as_dict(), **changes})

    def to_json(self) -> bytes:
        d = self.as_dict()
        return _json({k: v for k, v in d.items() if v is not None or k == "encryption"})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Meta:
        fields = cls.__slots__
        return cls(**{k: v for k, v in d.items() if k in fields})


def _json(d: dict[str, Any]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


def sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


_zstd_module: Any = None
_zstd_lock = _thread.allocate_lock()


def zstd() -> Any:
    """The zstandard API (ZstdCompressor, ZstdDecompressor, ZstdError, ...).

    The package's __init__ only re-exports its C backend, but first imports platform,
    typing and re: ~8 ms of each wal push and wal fetch. So, unless the package is loaded
    already or its import policy is not the default, load the backend alone, under its
    own name (a later ``import zstandard`` finds and re-exports it as usual); on any
    surprise, import the package."""
    global _zstd_module
    with _zstd_lock:  # compression runs on threads
        if _zstd_module is None:
            _zstd_module = _zstd_backend()
            if _zstd_module is None:
                import zstandard

                _zstd_module = zstandard
        return _zstd_module


def _zstd_backend() -> Any:
    if (
        "zstandard" in sys.modules
        or sys.implementation.name != "cpython"
        or os.environ.get("PYTHON_ZSTANDARD_IMPORT_POLICY", "default").strip() != "default"
    ):
        return None
    try:
        # where the package is, found as the import system finds it (no importlib import)
        spec = None
        for finder in sys.meta_path:
            spec = finder.find_spec("zstandard", None)
            if spec is not None:
                break
        if spec is None or not spec.submodule_search_locations:
            return None
        package = type(sys)("zstandard")  # stands in for the package while the backend loads
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["zstandard"] = package
        try:
            __import__("zstandard.backend_c")
        finally:
            if sys.modules.get("zstandard") is package:
                del sys.modules["zstandard"]
        backend = sys.modules["zstandard.backend_c"]
    except (ImportError, AttributeError, KeyError):
        sys.modules.pop("zstandard.backend_c", None)
        return None
    return backend if hasattr(backend, "ZstdCompressor") else None


#: zstd's job size when one object is compressed by several threads: a 16 MiB segment
#: is four jobs, so two cores share it evenly (the library's default for level 3 is
#: larger than a segment, which leaves one thread idle).
JOB_SIZE = 4 << 20


def compress(data: bytes | memoryview, algorithm: str, level: int, threads: int = 0) -> bytes:
    """``data`` compressed; ``threads`` > 0: by that many zstd worker threads at once (a
    standard frame all the same, byte-identical once decompressed)."""
    if algorithm == "none":
        return bytes(data)
    api = zstd()
    if threads > 0 and len(data) > JOB_SIZE:
        params = api.ZstdCompressionParameters.from_level(
            level, source_size=len(data), threads=threads, job_size=JOB_SIZE
        )
        compressor = api.ZstdCompressor(compression_params=params)
    else:
        compressor = api.ZstdCompressor(level=level)
    compressed: bytes = compressor.compress(data)
    return compressed


def decompress(payload: bytes, algorithm: str, size: int) -> bytes:
    """The ``size`` original bytes of ``payload``. Never allocates more than ``size``
    (plus a little): a zstd frame claiming a larger content size is refused, not trusted."""
    if algorithm == "none":
        return payload
    if algorithm != "zstd":
        raise IntegrityError(f"unknown compression {algorithm!r}")
    zstandard = zstd()
    try:
        claimed = zstandard.frame_content_size(payload)
        if claimed > size:
            raise IntegrityError(
                f"stored object is corrupt (its frame claims {claimed} bytes, not {size})"
            )
        data: bytes = zstandard.ZstdDecompressor().decompress(payload, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"stored object is corrupt (does not decompress: {exc})") from None
    return data


def seal(meta: Meta, payload: bytes, keys: Keyring | None = None) -> bytes:
    """The stored form of ``payload`` (the compressed contents ``meta`` describes),
    encrypted with the keyring's current key when there is one."""
    key = keys.current if keys is not None else None
    if key is None:
        header = meta.replace(encryption=None, key_id=None, nonce=None, mac=None).to_json()
        return b"".join((MAGIC, _LEN.pack(len(header)), header, payload))
    from pgharbor import crypto

    nonce = crypto.new_nonce()
    public = {
        "kind": meta.kind,
        "name": meta.name,
        "cluster": meta.cluster,
        "cluster_id": meta.cluster_id,
        "system_identifier": meta.system_identifier,
        "encryption": crypto.ALGORITHM,
        "key_id": key.id,
        "nonce": nonce.hex(),
        "mac": key.fingerprint(meta.sha256),
    }
    header = _json(public)
    prefix = MAGIC + _LEN.pack(len(header)) + header
    inner = _json({"size": meta.size, "sha256": meta.sha256, "compression": meta.compression})
    sealed = key.encrypt(nonce, b"".join((_LEN.pack(len(inner)), inner, payload)), prefix)
    return prefix + sealed


MAX_HEADER = 64 * 1024  # headers are a few hundred bytes


def header_length(head: bytes) -> int:
    if len(head) < PREFIX or head[: len(MAGIC)] != MAGIC:
        raise IntegrityError("not a pgharbor object (bad magic)")
    (n,) = _LEN.unpack_from(head, len(MAGIC))
    if n > MAX_HEADER:
        raise IntegrityError(f"object header is corrupt (claims {n} bytes)")
    return PREFIX + int(n)


# Largest original size any stored object may claim: WAL segments are at most 1 GiB,
# chunk map parts 2 MiB; manifests grow with the number of files. Callers that know the
# size to expect pass a tighter bound (wal fetch: the segment size).
MAX_OBJECT_SIZE = 1 << 30
_TEXT = ("kind", "name", "cluster", "cluster_id", "system_identifier", "sha256", "compression")
_OPTIONAL_TEXT = ("encryption", "key_id", "nonce", "mac")


def _check_fields(d: Any) -> dict[str, Any]:
    """A header as stored: a JSON object whose fields have the types Meta declares (a
    hostile or damaged header must fail here, as an IntegrityError, not deep inside)."""
    if not isinstance(d, dict):
        raise IntegrityError("object header is corrupt: not a JSON object")
    for k in _TEXT:
        if k in d and not isinstance(d[k], str):
            raise IntegrityError(f"object header is corrupt: {k} is not a string")
    for k in _OPTIONAL_TEXT:
        if d.get(k) is not None and not isinstance(d[k], str):
            raise IntegrityError(f"object header is corrupt: {k} is not a string")
    if "size" in d:
        size = d["size"]
        if type(size) is not int or not 0 <= size <= MAX_OBJECT_SIZE:
            raise IntegrityError(f"object header is corrupt: bad size {size!r}"[:200])
    return d


def read_meta(head: bytes) -> Meta:
    """Parse the header from the first bytes of an object (at least header_length())."""
    end = header_length(head)
    if len(head) < end:
        raise IntegrityError("object header is truncated")
    try:
        d = _check_fields(json.loads(head[PREFIX:end]))
        if d.get("encryption") is not None:
            d.setdefault("compression", "")  # hidden in the ciphertext
        return Meta.from_dict(d)
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise IntegrityError(f"object header is corrupt: {exc}"[:300]) from None


def _no_key(meta: Meta, what: str) -> EncryptionError:
    return EncryptionError(
        f"{what} is encrypted (key {meta.key_id}) and no encryption key is configured "
        f"for cluster {meta.cluster!r}",
        hint=f"set encryption_key_file or encryption_key_env in [clusters.{meta.cluster}] "
        "of the config file",
    )


def _decrypt(meta: Meta, prefix: bytes, sealed: bytes, keys: Keyring | None) -> tuple[Meta, bytes]:
    from pgharbor import crypto

    if meta.encryption != crypto.ALGORITHM:
        raise IntegrityError(f"{meta.name}: unknown encryption {meta.encryption!r}")
    if keys is None or not keys.keys:
        raise _no_key(meta, meta.name)
    key = keys.get(meta.key_id or "", meta.name)
    try:
        nonce = bytes.fromhex(meta.nonce or "")
    except ValueError:
        nonce = b""
    if len(nonce) != crypto.NONCE_BYTES:
        raise IntegrityError(f"{meta.name}: object header is corrupt (bad nonce)")
    inner = key.decrypt(nonce, sealed, prefix, meta.name)
    try:
        (n,) = _LEN.unpack_from(inner, 0)
        d = _check_fields(json.loads(inner[_LEN.size : _LEN.size + n]))
        meta = meta.replace(size=d["size"], sha256=d["sha256"], compression=d["compression"])
    except (struct.error, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise IntegrityError(f"{meta.name}: inner header is corrupt: {exc}"[:300]) from None
    return meta, inner[_LEN.size + n :]


def unseal(
    blob: bytes,
    keys: Keyring | None = None,
    *,
    max_size: int = MAX_OBJECT_SIZE,
    expect: bytes | memoryview | None = None,
) -> tuple[Meta, bytes]:
    """Return the metadata and the verified original bytes of a stored object. An
    encrypted one needs ``keys`` holding its key: EncryptionError otherwise. A plaintext
    one is refused when ``keys`` require encryption, and one claiming more than
    ``max_size`` bytes is refused before anything is decompressed (IntegrityError).
    With ``expect`` (contents known to be right), the object must hold exactly those
    bytes: compared directly, which is stronger than, and cheaper than, its checksum."""
    meta = read_meta(blob)
    end = header_length(blob)
    payload = blob[end:]
    if meta.encryption is not None:
        meta, payload = _decrypt(meta, blob[:end], payload, keys)
    elif keys is not None and keys.required:
        raise keys.refuse_plaintext(meta.name or "a stored object")
    if meta.size > max_size:
        raise IntegrityError(
            f"{meta.name}: header claims {meta.size} bytes, more than the {max_size} "
            "expected (stored object is corrupt)"
        )
    data = decompress(payload, meta.compression, meta.size)
    if expect is not None:
        if data != expect:
            raise IntegrityError(f"{meta.name}: its contents are not what it claims to hold")
    elif len(data) != meta.size or sha256(data) != meta.sha256:
        raise IntegrityError(f"{meta.name}: checksum mismatch (stored object is corrupt)")
    return meta, data


def same_contents(found: Meta, sha256_hex: str, keys: Keyring | None) -> bool:
    """Whether the stored object whose header is ``found`` holds the contents whose SHA-256
    is ``sha256_hex`` (from the header alone: no download, no decryption). Raises
    EncryptionError when it cannot tell: encrypted with a key that is not configured."""
    if found.encryption is None:
        return found.sha256 == sha256_hex
    if keys is None or not keys.keys:
        raise _no_key(found, "the stored copy")
    key = keys.get(found.key_id or "", "the stored copy")
    import hmac

    return found.mac is not None and hmac.compare_digest(found.mac, key.fingerprint(sha256_hex))
