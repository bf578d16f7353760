"""WAL file names, LSNs and the segment long page header. Pure: no I/O.

Facts are in shared/POSTGRES-NOTES.md: a segment is named
``TTTTTTTTXXXXXXXXYYYYYYYY`` (timeline, segno // segs_per_id, segno % segs_per_id).
"""

from __future__ import annotations

import struct

from pgharbor.errors import UsageError, WalValidationError
from pgharbor.plain import FrozenRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar, Final

XLP_LONG_HEADER = 0x0002
XLOG_BLCKSZ = 8192
# xlp_magic per major version (XLOG_PAGE_MAGIC in access/xlog_internal.h).
PAGE_MAGIC = {0xD101: 11, 0xD104: 12, 0xD106: 13, 0xD10D: 14, 0xD110: 15, 0xD113: 16, 0xD116: 17}
# XLogLongPageHeaderData: magic, info, tli, pageaddr, rem_len, (pad), sysid, seg_size, blcksz
_LONG_HEADER = struct.Struct("<HHIQI4xQII")
LONG_HEADER_SIZE = _LONG_HEADER.size  # 40


class WalKind(str):
    """The kind of a WAL-style file: WalKind.SEGMENT etc. are strings ("segment", ...),
    one object each, so ``kind is WalKind.SEGMENT`` holds for parsed names."""

    __slots__ = ()
    SEGMENT: ClassVar[WalKind]
    PARTIAL: ClassVar[WalKind]
    HISTORY: ClassVar[WalKind]
    BACKUP: ClassVar[WalKind]


WalKind.SEGMENT = WalKind("segment")
WalKind.PARTIAL = WalKind("partial")
WalKind.HISTORY = WalKind("history")
WalKind.BACKUP = WalKind("backup")


class WalName(FrozenRecord):
    __slots__ = ("name", "kind", "timeline", "log", "seg")  # noqa: RUF023
    name: Final[str]
    kind: Final[WalKind]
    timeline: Final[int]
    log: Final[int]  # XXXXXXXX
    seg: Final[int]  # YYYYYYYY

    def __init__(self, name: str, kind: WalKind, timeline: int, log: int = 0, seg: int = 0) -> None:
        self.name = name
        self.kind = kind
        self.timeline = timeline
        self.log = log
        self.seg = seg

    def segno(self, segment_size: int) -> int:
        return self.log * segs_per_id(segment_size) + self.seg

    @property
    def group(self) -> str:
        """Folder used to group files in storage: timeline + log id (like pgBackRest)."""
        return self.name[:16] if self.kind is not WalKind.HISTORY else "history"


_HEX = "0123456789ABCDEF"


def _is_hex(text: str, length: int) -> bool:
    """``text`` is ``length`` upper-case hex digits (strip removes them all, nothing else)."""
    return len(text) == length and not text.strip(_HEX)


def _split_name(name: str) -> tuple[WalKind, str] | None:
    """The kind of a WAL-style file name and its hex head (24 digits, 8 for .history)."""
    head, dot, rest = name.partition(".")
    if not _is_hex(head, 8 if rest == "history" else 24):
        return None
    if not dot:
        return WalKind.SEGMENT, head
    if rest == "partial":
        return WalKind.PARTIAL, head
    if rest == "history":
        return WalKind.HISTORY, head
    offset, dot, suffix = rest.partition(".")
    if dot and suffix == "backup" and _is_hex(offset, 8):
        return WalKind.BACKUP, head
    return None


def parse_name(name: str) -> WalName:
    """Parse a WAL-style file name; anything else (paths, traversal, junk) is a UsageError."""
    split = _split_name(name)
    if split is not None:
        kind, head = split
        tli = int(head[:8], 16)
        if tli != 0:
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
    hi, slash, lo = text.strip().partition("/")
    if not (slash and _is_lsn_half(hi) and _is_lsn_half(lo)):
        raise UsageError(f"{text!r} is not an LSN (expected X/Y in hex, e.g. 0/3000028)")
    return (int(hi, 16) << 32) | int(lo, 16)


def _is_lsn_half(text: str) -> bool:
    """1 to 8 hex digits, either case."""
    return 1 <= len(text) <= 8 and not text.strip("0123456789ABCDEFabcdef")


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_segno(lsn: int, segment_size: int) -> int:
    return lsn // segment_size


class SegmentHeader(FrozenRecord):
    __slots__ = (  # noqa: RUF023
        "magic",
        "info",
        "timeline",
        "pageaddr",
        "system_identifier",
        "segment_size",
        "block_size",
    )
    magic: Final[int]
    info: Final[int]
    timeline: Final[int]
    pageaddr: Final[int]
    system_identifier: Final[int]
    segment_size: Final[int]
    block_size: Final[int]

    def __init__(
        self,
        magic: int,
        info: int,
        timeline: int,
        pageaddr: int,
        system_identifier: int,
        segment_size: int,
        block_size: int,
    ) -> None:
        self.magic = magic
        self.info = info
        self.timeline = timeline
        self.pageaddr = pageaddr
        self.system_identifier = system_identifier
        self.segment_size = segment_size
        self.block_size = block_size

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
        # each line: an ancestor timeline and where it ended; ancestors are older than
        # this timeline and listed oldest first, their switch points in WAL order
        last_tli, last_lsn = 0, -1
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split(None, 2)
            if len(fields) < 2 or not fields[0].isdigit():
                raise WalValidationError(f"{wal.name}: malformed timeline history line {line!r}")
            tli, lsn = int(fields[0]), parse_lsn(fields[1])
            if not last_tli < tli < wal.timeline or lsn < last_lsn:
                raise WalValidationError(
                    f"{wal.name}: history line {line!r} does not fit timeline {wal.timeline}'s "
                    "history (ancestors must be older timelines, in order)"
                )
            last_tli, last_lsn = tli, lsn
