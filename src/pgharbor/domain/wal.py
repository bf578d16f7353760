"""WAL file names, LSNs and the segment long page header. Pure: no I/O.

Facts are in shared/POSTGRES-NOTES.md: a segment is named
``TTTTTTTTXXXXXXXXYYYYYYYY`` (timeline, segno // segs_per_id, segno % segs_per_id).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import StrEnum

from pgharbor.errors import UsageError, WalValidationError

XLP_LONG_HEADER = 0x0002
XLOG_BLCKSZ = 8192
# xlp_magic per major version (XLOG_PAGE_MAGIC in access/xlog_internal.h).
PAGE_MAGIC = {0xD101: 11, 0xD104: 12, 0xD106: 13, 0xD10D: 14, 0xD110: 15, 0xD113: 16, 0xD116: 17}
# XLogLongPageHeaderData: magic, info, tli, pageaddr, rem_len, (pad), sysid, seg_size, blcksz
_LONG_HEADER = struct.Struct("<HHIQI4xQII")
LONG_HEADER_SIZE = _LONG_HEADER.size  # 40


class WalKind(StrEnum):
    SEGMENT = "segment"
    PARTIAL = "partial"
    HISTORY = "history"
    BACKUP = "backup"


_HEX24 = r"[0-9A-F]{24}"
_PATTERNS: tuple[tuple[WalKind, re.Pattern[str]], ...] = (
    (WalKind.SEGMENT, re.compile(rf"^({_HEX24})$")),
    (WalKind.PARTIAL, re.compile(rf"^({_HEX24})\.partial$")),
    (WalKind.HISTORY, re.compile(r"^([0-9A-F]{8})\.history$")),
    (WalKind.BACKUP, re.compile(rf"^({_HEX24})\.[0-9A-F]{{8}}\.backup$")),
)


@dataclass(frozen=True)
class WalName:
    name: str
    kind: WalKind
    timeline: int
    log: int = 0  # XXXXXXXX
    seg: int = 0  # YYYYYYYY

    def segno(self, segment_size: int) -> int:
        return self.log * segs_per_id(segment_size) + self.seg

    @property
    def group(self) -> str:
        """Folder used to group files in storage: timeline + log id (like pgBackRest)."""
        return self.name[:16] if self.kind is not WalKind.HISTORY else "history"


def parse_name(name: str) -> WalName:
    """Parse a WAL-style file name; anything else (paths, traversal, junk) is a UsageError."""
    for kind, pattern in _PATTERNS:
        m = pattern.match(name)
        if m:
            head = m.group(1)
            tli = int(head[:8], 16)
            if tli == 0:
                break
            if kind is WalKind.HISTORY:
                return WalName(name, kind, tli)
            return WalName(name, kind, tli, int(head[8:16], 16), int(head[16:24], 16))
    raise UsageError(
        f"{name!r} is not a WAL file name (expected a segment, .partial, .history or .backup name)"
    )


def segs_per_id(segment_size: int) -> int:
    return 0x100000000 // segment_size


def segment_name(timeline: int, segno: int, segment_size: int) -> str:
    per = segs_per_id(segment_size)
    return f"{timeline:08X}{segno // per:08X}{segno % per:08X}"


def parse_lsn(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\s*", text)
    if not m:
        raise UsageError(f"{text!r} is not an LSN (expected X/Y in hex, e.g. 0/3000028)")
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_segno(lsn: int, segment_size: int) -> int:
    return lsn // segment_size


@dataclass(frozen=True)
class SegmentHeader:
    magic: int
    info: int
    timeline: int
    pageaddr: int
    system_identifier: int
    segment_size: int
    block_size: int

    @property
    def pg_major(self) -> int | None:
        return PAGE_MAGIC.get(self.magic)


def read_header(data: bytes) -> SegmentHeader:
    if len(data) < LONG_HEADER_SIZE:
        raise WalValidationError(f"file is {len(data)} bytes, too short for a WAL page header")
    magic, info, tli, pageaddr, _rem, sysid, seg_size, blcksz = _LONG_HEADER.unpack_from(data)
    return SegmentHeader(magic, info, tli, pageaddr, sysid, seg_size, blcksz)


def validate_segment(
    wal: WalName, data: bytes | memoryview, *, system_identifier: int, segment_size: int
) -> SegmentHeader:
    """Check a segment (or .partial) against its name and the cluster's identity.

    Raises WalValidationError naming the first mismatch; returns the parsed header.
    """
    if len(data) != segment_size:
        raise WalValidationError(
            f"{wal.name}: size is {len(data)} bytes, the cluster's WAL segment size is "
            f"{segment_size} (truncated or foreign file)"
        )
    hdr = read_header(bytes(data[:LONG_HEADER_SIZE]))
    if hdr.magic not in PAGE_MAGIC:
        raise WalValidationError(f"{wal.name}: bad page magic 0x{hdr.magic:04X}: not a WAL segment")
    if not hdr.info & XLP_LONG_HEADER:
        raise WalValidationError(f"{wal.name}: first page lacks the long header flag")
    if hdr.system_identifier != system_identifier:
        raise WalValidationError(
            f"{wal.name}: system identifier {hdr.system_identifier} does not match the "
            f"cluster's {system_identifier}: this WAL belongs to another cluster"
        )
    if hdr.segment_size != segment_size or hdr.block_size != XLOG_BLCKSZ:
        raise WalValidationError(
            f"{wal.name}: header says segment size {hdr.segment_size} / block size "
            f"{hdr.block_size}, expected {segment_size} / {XLOG_BLCKSZ}"
        )
    # The first segment of a new timeline begins with a copy of its parent's pages, so its
    # header may carry an older timeline, never a newer one (as PostgreSQL checks).
    if not 1 <= hdr.timeline <= wal.timeline:
        raise WalValidationError(
            f"{wal.name}: header timeline {hdr.timeline} is not possible in a file of "
            f"timeline {wal.timeline}"
        )
    expected = wal.segno(segment_size) * segment_size
    if hdr.pageaddr != expected:
        raise WalValidationError(
            f"{wal.name}: header page address {format_lsn(hdr.pageaddr)} does not match the "
            f"name's {format_lsn(expected)}"
        )
    return hdr


def validate_text_file(wal: WalName, data: bytes) -> None:
    """Light checks of .history and .backup files: text PostgreSQL could have written."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise WalValidationError(f"{wal.name}: not a text file") from None
    if wal.kind is WalKind.BACKUP and "START WAL LOCATION" not in text:
        raise WalValidationError(f"{wal.name}: not a backup history file (no START WAL LOCATION)")
    if wal.kind is WalKind.HISTORY:
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split(None, 2)
            if len(fields) < 2 or not fields[0].isdigit():
                raise WalValidationError(f"{wal.name}: malformed timeline history line {line!r}")
            parse_lsn(fields[1])
