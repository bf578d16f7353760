"""libpq connection strings that pgharbor stores or writes: never with a password."""

from __future__ import annotations

from pgharbor.catalog.urls import redact_conninfo
from pgharbor.errors import UsageError

PASSWORD_HINT = (
    "put the password in ~/.pgpass of the OS user that runs pgharbor (mode 0600), or in "
    "the file PGPASSFILE or passfile=… names, or use a service file (service=…)"
)


def refuse_password(dsn: str, what: str, why: str) -> None:
    """Refuse a connection string that holds a password (``password=``, ``sslpassword=``,
    ``user:pw@``, ``?password=``): it may name a password file or a service instead."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        settings = conninfo_to_dict(dsn)
    except ProgrammingError as exc:  # libpq's reason may quote a piece of the string
        reason = str(exc).strip().splitlines()[0] if redact_conninfo(dsn) == dsn else ""
        raise UsageError(
            f"{what} is not a valid libpq connection string (key=value settings or a "
            f"postgresql:// URL){': ' + reason if reason else ''}"
        ) from None
    secret = sorted(k for k, v in settings.items() if "password" in k and v)
    if secret:
        raise UsageError(
            f"{what} holds a password ({', '.join(secret)}): {why}", hint=PASSWORD_HINT
        )
