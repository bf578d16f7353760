"""The base backup's tar parser (backup.tarstream) and the per-file check against
backup_manifest, without a server: archives written by Python's tarfile in ustar format
(as PostgreSQL writes them), fed in pieces of any size."""

from __future__ import annotations

import io
import json
import random
import tarfile

import google_crc32c
import pytest

from pgharbor.backup.manifest import BackupManifest, FileEntry, check_against_pg_manifest
from pgharbor.backup.tarstream import (
    CHUNK,
    ENTRY,
    FILE_END,
    Checksum,
    Pump,
    TarReader,
    parse_header,
)
from pgharbor.errors import IntegrityError

FILES = {
    "PG_VERSION": b"15\n",
    "base/1/1259": bytes(range(256)) * 700,  # 175 KiB: several chunks, a partial last one
    "empty": b"",
    "global/pg_control": b"\x01" * 8192,
}


def _tar(fmt: int = tarfile.USTAR_FORMAT, extra: tarfile.TarInfo | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
        for d in ("base", "base/1", "global"):
            info = tarfile.TarInfo(d + "/")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o700, 1700000000
            tf.addfile(info)
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, 1700000001
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("pg_tblspc/16400")
        link.type, link.linkname, link.mode = tarfile.SYMTYPE, "/srv/ts", 0o777
        tf.addfile(link)
        if extra is not None:
            tf.addfile(extra, io.BytesIO(b"x" * extra.size))
    return out.getvalue()


def _pieces(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, at = [], 0
    while at < len(data):
        n = rng.choice([1, 7, 511, 512, 513, 4096, 32768, 70000])
        out.append(data[at : at + n])
        at += n
    return out


@pytest.mark.parametrize("seed", range(4))
def test_members_and_data_come_out_whole_whatever_the_pieces(seed: int) -> None:
    got: dict[str, bytes] = {}
    kinds: dict[str, tuple[str, int, str | None]] = {}
    for m, data in TarReader(_pieces(_tar(), seed)).members(65536):
        blocks = list(data)
        assert all(len(b) == 65536 for b in blocks[:-1])
        got[m.name] = b"".join(blocks)
        kinds[m.name] = (m.type, m.mode, m.link)
    assert {k: v for k, v in got.items() if kinds[k][0] == "f"} == FILES
    assert kinds["base/1"] == ("d", 0o700, None)
    assert kinds["pg_tblspc/16400"] == ("l", 0o777, "/srv/ts")


def test_the_pump_hands_over_entries_chunks_and_checksums_in_order() -> None:
    pump = Pump(_pieces(_tar(), 9), 65536, lambda: Checksum("CRC32C"))
    files: dict[str, bytes] = {}
    sums: dict[str, str] = {}
    current = ""
    for kind, obj in pump.events():
        if kind == ENTRY:
            current = obj.name  # type: ignore[attr-defined]
            files.setdefault(current, b"")
        elif kind == CHUNK:
            assert isinstance(obj, list) and 1 <= len(obj) <= 4
            files[current] += b"".join(obj)
        else:
            assert kind == FILE_END
            sums[current] = str(obj)
    pump.close()
    assert {k: files[k] for k in FILES} == FILES
    for name, data in FILES.items():
        assert sums[name] == google_crc32c.value(data).to_bytes(4, "little").hex()


def test_a_header_with_a_bad_checksum_is_refused() -> None:
    data = bytearray(_tar())
    data[600] ^= 0xFF  # inside the second header's name
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        for _, blocks in TarReader([bytes(data)]).members(65536):
            list(blocks)


def test_a_truncated_archive_is_refused() -> None:
    data = _tar()
    cut = data.index(FILES["base/1/1259"][:512]) + 10000
    with pytest.raises(IntegrityError, match="ends inside a member"):
        for _, blocks in TarReader([data[:cut]]).members(65536):
            list(blocks)
    end = len(data.rstrip(b"\0")) + 511 & ~511  # the members, without the zero blocks
    with pytest.raises(IntegrityError, match="without its end-of-archive"):
        for _, blocks in TarReader([data[:end]]).members(65536):
            list(blocks)


def test_member_types_postgresql_does_not_write_are_refused() -> None:
    fifo = tarfile.TarInfo("fifo")
    fifo.type = tarfile.FIFOTYPE
    with pytest.raises(IntegrityError, match="unsupported type"):
        for _, blocks in TarReader([_tar(extra=fifo)]).members(65536):
            list(blocks)
    long = tarfile.TarInfo("x" * 150)  # a pax header ('x') in front of it
    long.size = 3
    with pytest.raises(IntegrityError, match="unsupported type"):
        for _, blocks in TarReader([_tar(tarfile.PAX_FORMAT, long)]).members(65536):
            list(blocks)


def test_sizes_past_8_gib_in_base_256() -> None:
    header = bytearray(tarfile.TarInfo("big").tobuf(tarfile.USTAR_FORMAT))
    header[124:136] = bytes([0x80]) + (9 << 30).to_bytes(11, "big")
    header[148:156] = b" " * 8
    header[148:155] = f"{sum(header):06o}\0".encode()
    m = parse_header(bytes(header))
    assert m is not None and m.size == 9 << 30


def _manifest(files: dict[str, bytes], algorithm: str) -> BackupManifest:
    entries = []
    for path, data in files.items():
        c = Checksum(algorithm)
        c.update(data)
        entries.append(
            {
                "Path": path,
                "Size": len(data),
                "Checksum-Algorithm": algorithm,
                "Checksum": c.hexdigest(),
            }
        )
    m = BackupManifest("b", "c1", "id", "42", "x", 150000, 65536)
    m.files = [FileEntry(p, "f", 0o600, len(d)) for p, d in files.items()]
    m.pg_manifest = json.dumps({"Files": entries})
    return m


@pytest.mark.parametrize("algorithm", ["CRC32C", "SHA256"])
def test_each_file_is_checked_against_backup_manifest(algorithm: str) -> None:
    m = _manifest(FILES, algorithm)
    sums = {}
    for path, data in FILES.items():
        c = Checksum(algorithm)
        c.update(data)
        sums[path] = c.hexdigest()
    assert check_against_pg_manifest(m, sums) == len(FILES)
    sums["base/1/1259"] = Checksum(algorithm).hexdigest()  # what an empty file gives
    with pytest.raises(IntegrityError, match=f"base/1/1259: {algorithm} checksum differs"):
        check_against_pg_manifest(m, sums)
    with pytest.raises(IntegrityError, match="checksum differs"):
        check_against_pg_manifest(m, {})


def test_crc32c_is_written_as_postgresql_writes_it() -> None:
    c = Checksum("CRC32C")
    c.update(b"123456789")  # the CRC-32C check value is 0xE3069283
    assert c.hexdigest() == "839206e3"  # the uint32's bytes in memory order (x86)
