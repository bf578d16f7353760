"""Recovery settings PostgreSQL 12+ reads: a signal file and postgresql.auto.conf."""

from __future__ import annotations

from pgharbor.domain.pitr import RecoveryTarget
from pgharbor.restore.place import Root

ARCHIVE_MODES = ("off", "preserve")

MARK = "# pgharbor restore"


def conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def recovery_settings(
    target: RecoveryTarget,
    restore_command: str,
    *,
    standby: bool,
    primary_conninfo: str | None,
    archive_mode: str = "off",
) -> dict[str, str]:
    """The settings of the pgharbor section. ``archive_mode`` off: the copy archives
    nothing (whatever production's configuration says); preserve: production's own
    archive_mode and archive_command stay in force."""
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
    if archive_mode == "off":
        s["archive_mode"] = "off"
    return s


def write_recovery(root: Root, settings: dict[str, str], *, standby: bool) -> None:
    """The pgharbor section at the end of postgresql.auto.conf (replacing one a previous
    restore wrote), then the signal file; never through a symlink."""
    text = (root.read_file("postgresql.auto.conf") or b"").decode()
    if MARK in text:  # a previous pgharbor restore into this folder (--delta)
        text = text[: text.index(MARK)]
    lines = [MARK] + [f"{k} = {conf_value(v)}" for k, v in settings.items()]
    text = text.rstrip("\n") + ("\n" if text else "") + "\n".join(lines) + "\n"
    root.write_file("postgresql.auto.conf", text.encode())
    root.write_file("standby.signal" if standby else "recovery.signal", b"")
