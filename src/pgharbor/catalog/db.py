"""Opening the catalog with SQLAlchemy, creating and upgrading its schema (Alembic)."""

from __future__ import annotations

import logging
import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgharbor.catalog.schema import SCHEMA_REVISION
from pgharbor.catalog.urls import CatalogURL, parse_catalog_url
from pgharbor.errors import CatalogError, CatalogUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest migration (alembic is imported only to build or upgrade the schema;
    opening the catalog compares with schema.SCHEMA_REVISION, which a test keeps equal)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def make_engine(
    url: str, *, timeout: float = 10.0, create: bool = True, pooled: bool = False
) -> tuple[Engine, CatalogURL]:
    """An engine for the catalog at ``url`` (nothing is connected yet). A SQLite file is
    created (mode 0600: the catalog is nobody else's business) only with ``create`` (the
    default, for init); without it a missing file is "not initialised" and is never
    created behind the caller's back (SQLite is opened with mode=rw). ``pooled``: keep
    a few PostgreSQL connections open (a long-running process such as ``serve``; each is
    checked before use), instead of one connection per operation."""
    cu = parse_catalog_url(url)
    if cu.kind == "sqlite":
        return _sqlite_engine(cu, timeout, create), cu
    connect_args = {"connect_timeout": max(1, int(timeout))}
    if pooled:
        engine = sa.create_engine(
            cu.sqlalchemy_url,
            connect_args=connect_args,
            pool_size=4,
            max_overflow=4,
            pool_pre_ping=True,
            pool_recycle=300,
        )
    else:
        engine = sa.create_engine(
            cu.sqlalchemy_url, connect_args=connect_args, poolclass=sa.pool.NullPool
        )
    return engine, cu


def _sqlite_engine(cu: CatalogURL, timeout: float, create: bool) -> Engine:
    assert cu.path is not None
    path = cu.path
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise CatalogUnavailable(f"catalog folder {folder} does not exist")
    if create:
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise CatalogUnavailable(f"cannot create the catalog {path}: {exc.strerror}") from None
    elif not os.path.exists(path):
        raise CatalogError(
            f"the catalog {cu.display()} is not initialised", hint="run pgharbor init"
        )
    uri = f"file:{urllib.parse.quote(path)}?mode=rw"

    def connect() -> sqlite3.Connection:  # as SQLAlchemy opens a file database, but rw
        return sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)

    engine = sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.NullPool)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: object, _record: object) -> None:
        cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    return engine


def connect_check(engine: Engine, cu: CatalogURL) -> None:
    """Reach the catalog, or one clear error: unreachable (5), or, for SQLite, a file
    that is not a database (4). The SQLite header is read (schema_version), so a file
    that is not SQLite is caught here and never surfaces as an internal error."""
    probe = "PRAGMA schema_version" if cu.kind == "sqlite" else "SELECT 1"
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(probe))
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        if isinstance(exc, sa.exc.OperationalError):
            raise CatalogUnavailable(f"cannot reach the catalog {cu.display()}: {reason}") from None
        if cu.kind == "sqlite":  # "file is not a database"
            raise CatalogError(
                f"the catalog {cu.display()} is not a SQLite database ({reason})",
                hint="check --catalog, PGHARBOR_CATALOG or catalog in the config file",
            ) from None
        raise


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        rev = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        return None if rev is None else str(rev)


def migrate(engine: Engine, cu: CatalogURL) -> tuple[str | None, str]:
    """Create or upgrade the schema to the newest revision. Safe to run twice."""
    connect_check(engine, cu)
    before = current_revision(engine)
    from alembic import command

    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    after = current_revision(engine)
    assert after is not None
    log.info("catalog %s: revision %s -> %s", cu.display(), before, after)
    return before, after


def require_current(engine: Engine, cu: CatalogURL) -> None:
    connect_check(engine, cu)
    rev = current_revision(engine)
    if rev is None:
        raise CatalogError(
            f"the catalog {cu.display()} is not initialised", hint="run pgharbor init"
        )
    if rev != SCHEMA_REVISION:
        raise CatalogError(
            f"the catalog {cu.display()} is at schema revision {rev}, this pgharbor needs "
            f"{SCHEMA_REVISION}",
            hint="run pgharbor init to upgrade it",
        )
