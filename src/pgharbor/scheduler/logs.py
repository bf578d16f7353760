"""Logging of a serve node and its job processes: stderr (the journal under systemd) by
default, appended to ``log_file`` when it is set (reopened when logrotate moves it)."""

from __future__ import annotations

import logging
import logging.handlers

from pgharbor.settings import Settings


def setup(settings: Settings, name: str, *, verbose: bool = False) -> None:
    handler: logging.Handler
    if settings.log_file:
        handler = logging.handlers.WatchedFileHandler(settings.log_file)
        fmt = f"%(asctime)s pgharbor[{name}]: %(levelname)s %(message)s"
    else:
        handler = logging.StreamHandler()
        fmt = f"pgharbor[{name}]: %(levelname)s %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("sqlalchemy", "alembic", "paramiko", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
