"""The self-describing format of every stored object.

    b"PGHARBR1" | header length (uint32 LE) | header (JSON, UTF-8) | payload

The header names the cluster (id, name, system identifier), the original size, the
SHA-256 of the original bytes and how the payload was transformed (compression, later
encryption), so a target alone is enough to recover a cluster when the catalog is lost.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass
from typing import Any

from pgharbor.errors import IntegrityError

MAGIC = b"PGHARBR1"
_LEN = struct.Struct("<I")
PREFIX = len(MAGIC) + _LEN.size
HEAD_READ = 4096  # bytes to read to get the header of any object in one request


@dataclass(frozen=True)
class Meta:
    kind: str  # "wal", "descriptor", ...
    name: str
    cluster: str
    cluster_id: str
    system_identifier: str
    size: int
    sha256: str
    compression: str = "none"
    encryption: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Meta:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in fields})


def sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def compress(data: bytes | memoryview, algorithm: str, level: int) -> bytes:
    if algorithm == "none":
        return bytes(data)
    import zstandard

    return zstandard.ZstdCompressor(level=level).compress(data)


def decompress(payload: bytes, algorithm: str, size: int) -> bytes:
    if algorithm == "none":
        return payload
    if algorithm != "zstd":
        raise IntegrityError(f"unknown compression {algorithm!r}")
    import zstandard

    try:
        return zstandard.ZstdDecompressor().decompress(payload, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"stored object is corrupt (does not decompress: {exc})") from None


def seal(meta: Meta, payload: bytes) -> bytes:
    header = meta.to_json()
    return b"".join((MAGIC, _LEN.pack(len(header)), header, payload))


def header_length(head: bytes) -> int:
    if len(head) < PREFIX or head[: len(MAGIC)] != MAGIC:
        raise IntegrityError("not a pgharbor object (bad magic)")
    (n,) = _LEN.unpack_from(head, len(MAGIC))
    return PREFIX + int(n)


def read_meta(head: bytes) -> Meta:
    """Parse the header from the first bytes of an object (at least header_length())."""
    end = header_length(head)
    if len(head) < end:
        raise IntegrityError("object header is truncated")
    try:
        return Meta.from_dict(json.loads(head[PREFIX:end]))
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"object header is corrupt: {exc}") from None


def unseal(blob: bytes) -> tuple[Meta, bytes]:
    """Return the metadata and the verified original bytes of a stored object."""
    meta = read_meta(blob)
    payload = blob[header_length(blob) :]
    data = decompress(payload, meta.compression, meta.size)
    if len(data) != meta.size or sha256(data) != meta.sha256:
        raise IntegrityError(f"{meta.name}: checksum mismatch (stored object is corrupt)")
    return meta, data
