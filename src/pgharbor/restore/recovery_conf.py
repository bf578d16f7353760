"""Recovery settings PostgreSQL 12+ reads: a signal file and postgresql.auto.conf."""

from __future__ import annotations

from pathlib import Path

from pgharbor.domain.pitr import RecoveryTarget

MARK = "# pgharbor restore"


def conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def recovery_settings(
    target: RecoveryTarget, restore_command: str, *, standby: bool, primary_conninfo: str | None
) -> dict[str, str]:
    s = {"restore_command": restore_command}
    if target.kind == "immediate":
        s["recovery_target"] = "immediate"
    elif target.kind != "end":
        assert target.value is not None
        key = {
            "time": "recovery_target_time",
            "lsn": "recovery_target_lsn",
            "xid": "recovery_target_xid",
            "name": "recovery_target_name",
        }[target.kind]
        s[key] = target.value
        s["recovery_target_inclusive"] = "on" if target.inclusive else "off"
    s["recovery_target_timeline"] = target.timeline
    if target.kind != "end" and not standby:
        s["recovery_target_action"] = target.action
    if standby and primary_conninfo:
        s["primary_conninfo"] = primary_conninfo
    return s


def write_recovery(pgdata: Path, settings: dict[str, str], *, standby: bool) -> None:
    auto = pgdata / "postgresql.auto.conf"
    text = auto.read_text() if auto.exists() else ""
    if MARK in text:  # a previous pgharbor restore into this folder (--delta)
        text = text[: text.index(MARK)]
    lines = [MARK] + [f"{k} = {conf_value(v)}" for k, v in settings.items()]
    auto.write_text(text.rstrip("\n") + ("\n" if text else "") + "\n".join(lines) + "\n")
    for name in ("recovery.signal", "standby.signal"):
        (pgdata / name).unlink(missing_ok=True)
    (pgdata / ("standby.signal" if standby else "recovery.signal")).touch()
