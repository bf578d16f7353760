from __future__ import annotations

import os

import pytest

from pgharbor import envelope
from pgharbor.errors import IntegrityError


def _meta(data: bytes, compression: str = "zstd") -> envelope.Meta:
    return envelope.Meta(
        kind="wal",
        name="000000010000000000000001",
        cluster="c",
        cluster_id="id",
        system_identifier="1",
        size=len(data),
        sha256=envelope.sha256(data),
        compression=compression,
    )


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_roundtrip(compression: str) -> None:
    data = os.urandom(1000) + bytes(100_000)
    blob = envelope.seal(_meta(data, compression), envelope.compress(data, compression, 3))
    meta, out = envelope.unseal(blob)
    assert out == data and meta.compression == compression
    assert envelope.read_meta(blob[: envelope.HEAD_READ]) == meta
    if compression == "zstd":
        assert len(blob) < len(data) / 2


def test_corruption_detected() -> None:
    data = os.urandom(5000)
    blob = bytearray(envelope.seal(_meta(data, "none"), data))
    blob[-10] ^= 0xFF
    with pytest.raises(IntegrityError, match="checksum"):
        envelope.unseal(bytes(blob))


def test_not_an_object() -> None:
    with pytest.raises(IntegrityError, match="bad magic"):
        envelope.unseal(b"hello world, not ours")
    blob = envelope.seal(_meta(b"x", "zstd"), b"garbage-not-zstd")
    with pytest.raises(IntegrityError):
        envelope.unseal(blob)
