from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgharbor.domain import wal
from pgharbor.errors import UsageError, WalValidationError
from tests.fixtures.walgen import SEG, history, segment

SYSID = 7310000000000000001


@pytest.mark.parametrize(
    ("name", "kind", "tli", "log", "seg"),
    [
        ("000000010000000000000001", wal.WalKind.SEGMENT, 1, 0, 1),
        ("0000000A00000003000000FF", wal.WalKind.SEGMENT, 10, 3, 255),
        ("000000020000000000000003.partial", wal.WalKind.PARTIAL, 2, 0, 3),
        ("00000002.history", wal.WalKind.HISTORY, 2, 0, 0),
        ("000000010000000000000002.00000028.backup", wal.WalKind.BACKUP, 1, 0, 2),
    ],
)
def test_parse_name(name: str, kind: wal.WalKind, tli: int, log: int, seg: int) -> None:
    w = wal.parse_name(name)
    assert (w.kind, w.timeline, w.log, w.seg) == (kind, tli, log, seg)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../../etc/passwd",
        "pg_wal/000000010000000000000001",
        "000000010000000000000001/..",
        "00000001000000000000001",
        "0000000100000000000000011",
        "000000010000000000000001.gz",
        "000000000000000000000001",  # timeline 0 does not exist
        "00000001.History",
        "0000000100000000000000zz",
        "RECOVERYXLOG",
    ],
)
def test_parse_name_refuses(name: str) -> None:
    with pytest.raises(UsageError):
        wal.parse_name(name)


@given(st.integers(1, 0xFFFFFFFF), st.integers(0, 2**40 - 1))
def test_segment_name_roundtrip(tli: int, segno: int) -> None:
    name = wal.segment_name(tli, segno, SEG)
    w = wal.parse_name(name)
    assert w.timeline == tli and w.segno(SEG) == segno


@given(st.integers(0, 2**64 - 1))
def test_lsn_roundtrip(lsn: int) -> None:
    assert wal.parse_lsn(wal.format_lsn(lsn)) == lsn


def test_lsn_examples() -> None:
    assert wal.parse_lsn("0/3000028") == 0x3000028
    assert wal.parse_lsn("1/0") == 1 << 32
    assert wal.lsn_segno(wal.parse_lsn("0/3000028"), SEG) == 3
    with pytest.raises(UsageError):
        wal.parse_lsn("3000028")


def test_validate_good_segment() -> None:
    name = "000000010000000000000005"
    hdr = wal.validate_segment(
        wal.parse_name(name), segment(name, SYSID), system_identifier=SYSID, segment_size=SEG
    )
    assert hdr.pg_major == 15 and hdr.system_identifier == SYSID


@pytest.mark.parametrize(
    ("data_kw", "message"),
    [
        ({"sysid": SYSID + 1}, "another cluster"),
        ({"size": SEG - 8192}, "truncated"),
        ({"magic": 0x1234}, "bad page magic"),
        ({"seg_size": 1024 * 1024}, "segment size"),
    ],
)
def test_validate_refusals(data_kw: dict[str, int], message: str) -> None:
    name = "000000010000000000000005"
    kw = {"sysid": SYSID, **data_kw}
    sysid = kw.pop("sysid")
    data = segment(name, sysid, **kw)
    with pytest.raises(WalValidationError, match=message):
        wal.validate_segment(wal.parse_name(name), data, system_identifier=SYSID, segment_size=SEG)


def test_validate_name_mismatch() -> None:
    data = segment("000000010000000000000005", SYSID)
    with pytest.raises(WalValidationError, match="page address"):
        wal.validate_segment(
            wal.parse_name("000000010000000000000006"),
            data,
            system_identifier=SYSID,
            segment_size=SEG,
        )
    newer = segment("000000030000000000000005", SYSID)
    with pytest.raises(WalValidationError, match="timeline"):
        wal.validate_segment(
            wal.parse_name("000000020000000000000005"),
            newer,
            system_identifier=SYSID,
            segment_size=SEG,
        )
    # the first segment of timeline 2 starts with timeline 1's pages: accepted
    wal.validate_segment(
        wal.parse_name("000000020000000000000005"), data, system_identifier=SYSID, segment_size=SEG
    )


def test_text_files() -> None:
    wal.validate_text_file(wal.parse_name("00000002.history"), history())
    with pytest.raises(WalValidationError):
        wal.validate_text_file(wal.parse_name("00000002.history"), b"\x00\xff garbage")
    with pytest.raises(WalValidationError):
        wal.validate_text_file(wal.parse_name("00000002.history"), b"one two three\n")
    with pytest.raises(WalValidationError, match="START WAL LOCATION"):
        wal.validate_text_file(
            wal.parse_name("000000010000000000000002.00000028.backup"), b"hello\n"
        )


@pytest.mark.parametrize(
    ("name", "text", "ok"),
    [
        ("00000003.history", "1\t0/3000000\treason\n2\t0/5000000\treason\n", True),
        ("00000004.history", "1\t0/3000000\tx\n3\t0/5000000\tx\n", True),  # 2 died young
        ("00000002.history", "2\t0/3000000\tx\n", False),  # its own timeline
        ("00000002.history", "5\t0/3000000\tx\n", False),  # a newer timeline
        ("00000003.history", "2\t0/3000000\tx\n1\t0/2000000\tx\n", False),  # out of order
        ("00000003.history", "1\t0/5000000\tx\n2\t0/3000000\tx\n", False),  # LSN goes back
    ],
)
def test_history_files_must_fit_their_timeline(name: str, text: str, ok: bool) -> None:
    check = lambda: wal.validate_text_file(wal.parse_name(name), text.encode())  # noqa: E731
    if ok:
        check()
    else:
        with pytest.raises(WalValidationError, match="does not fit"):
            check()
