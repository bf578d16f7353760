"""The command lines pgharbor hands to PostgreSQL (archive_command, restore_command),
built and quoted here only. They name this executable with the same catalog or config
file the operator used, never a password."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

from pgharbor.catalog.urls import parse_catalog_url, redact_conninfo, strip_password
from pgharbor.errors import ConfigError
from pgharbor.model import Cluster
from pgharbor.settings import Settings

log = logging.getLogger(__name__)


def pgharbor_command(settings: Settings) -> str:
    """This executable with its global options. A catalog the config file supplied is left
    to that file (--config); one given otherwise is carried with --catalog, but never its
    password: a note (a log warning) then says where the password must be instead."""
    parts = [_executable()]
    if settings.config_file is not None:
        parts += ["--config", str(Path(settings.config_file).absolute())]
    if settings.catalog and settings.catalog_source != "config":
        url = settings.catalog
        if parse_catalog_url(url).kind == "postgresql":
            url, had_password = strip_password(url)
            if redact_conninfo(url) != url:  # fail closed: never a password in a command
                raise ConfigError(
                    "the catalog URL cannot be written into a command line without its password",
                    hint="set catalog in a config file (mode 0600) and pass --config",
                )
            if had_password:
                log.warning(
                    "note: the catalog password is left out of this command line: the OS "
                    "user that runs it (postgres) needs it in its ~/.pgpass (mode 0600), in "
                    "the file PGPASSFILE names, or in a service file"
                )
        parts += ["--catalog", url]
    return " ".join(shlex.quote(p) for p in parts)


def _executable() -> str:
    """This pgharbor: the script that runs, else the one installed beside this Python (a
    service called in-process, e.g. by the web API), else the one on PATH."""
    if os.path.basename(sys.argv[0]) == "pgharbor":
        return os.path.abspath(sys.argv[0])
    beside = os.path.join(os.path.dirname(sys.executable), "pgharbor")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("pgharbor") or "pgharbor"


def conf_line(setting: str, command: str) -> str:
    """``setting = 'command'`` as postgresql.conf quotes it."""
    return f"{setting} = '{command.replace(chr(39), chr(39) * 2)}'"


def archive_command(settings: Settings, cluster: Cluster) -> str:
    """The archive_command for the cluster's mode (sync, or async with the spool)."""
    from pgharbor.archive.spool import async_archive_command

    cmd = pgharbor_command(settings)
    if cluster.archive_async:
        return async_archive_command(cmd, cluster.name)
    return f"{cmd} wal push {shlex.quote(cluster.name)} %p"


def restore_command(settings: Settings, cluster: str, *, state_dir_env: bool = False) -> str:
    """The restore_command (prefetched segments handed over in the shell, any failure
    but "not archived" stopping a recovery). ``state_dir_env``: carry this process's
    PGHARBOR_STATE_DIR (a restore writes the command for the restored server)."""
    from pgharbor.archive.prefetch import fast_restore_command

    cmd = pgharbor_command(settings)
    if state_dir_env and os.environ.get("PGHARBOR_STATE_DIR"):
        cmd = f"PGHARBOR_STATE_DIR={shlex.quote(os.environ['PGHARBOR_STATE_DIR'])} {cmd}"
    return fast_restore_command(cmd, cluster)


def command_lines(settings: Settings, cluster: Cluster) -> tuple[str, str]:
    """The archive_command and restore_command lines for postgresql.conf."""
    return (
        conf_line("archive_command", archive_command(settings, cluster)),
        conf_line("restore_command", restore_command(settings, cluster.name)),
    )
