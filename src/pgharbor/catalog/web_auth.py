"""The catalog's rows of the web front door: API tokens, local users, browser sessions and
sign-in attempts. Only hashes of secrets are written here (services/hashing.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from pgharbor.catalog.repo import Catalog, aware, now
from pgharbor.catalog.schema import api_tokens, signin_attempts, web_sessions, web_users
from pgharbor.errors import Conflict, NotFound


@dataclass(frozen=True)
class TokenRow:
    id: str
    name: str
    scope: str
    secret_hash: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class UserRow:
    name: str
    role: str
    password_hash: str
    created_at: datetime
    modified_at: datetime


@dataclass(frozen=True)
class SessionRow:
    id_hash: str
    user: str
    role: str
    client: str
    created_at: datetime
    expires_at: datetime


def _opt(dt: datetime | None) -> datetime | None:
    return aware(dt) if dt is not None else None


def _token(r: sa.RowMapping) -> TokenRow:
    return TokenRow(
        r["id"],
        r["name"],
        r["scope"],
        r["secret_hash"],
        r["created_by"],
        aware(r["created_at"]),
        _opt(r["expires_at"]),
        _opt(r["last_used_at"]),
    )


def _user(r: sa.RowMapping) -> UserRow:
    return UserRow(
        r["name"], r["role"], r["password_hash"], aware(r["created_at"]), aware(r["modified_at"])
    )


class WebAuthRepo:
    def __init__(self, catalog: Catalog) -> None:
        self.cat = catalog

    # -- tokens ------------------------------------------------------------------
    def add_token(
        self,
        token_id: str,
        name: str,
        scope: str,
        secret_hash: str,
        created_by: str,
        expires_at: datetime | None,
    ) -> TokenRow:
        with self.cat.engine.begin() as conn:
            if conn.execute(sa.select(api_tokens.c.id).where(api_tokens.c.name == name)).first():
                raise Conflict(f"token {name!r} already exists", hint="revoke it first")
            conn.execute(
                api_tokens.insert().values(
                    id=token_id,
                    name=name,
                    scope=scope,
                    secret_hash=secret_hash,
                    created_by=created_by,
                    created_at=now(),
                    expires_at=expires_at,
                )
            )
        return self.token(name)

    def token(self, name: str) -> TokenRow:
        return self._one_token(api_tokens.c.name == name, f"no token named {name!r}")

    def token_by_id(self, token_id: str) -> TokenRow:
        return self._one_token(api_tokens.c.id == token_id, "no such token")

    def _one_token(self, where: sa.ColumnElement[bool], missing: str) -> TokenRow:
        with self.cat.engine.connect() as conn:
            r = conn.execute(sa.select(api_tokens).where(where)).mappings().first()
        if r is None:
            raise NotFound(missing, hint="see pgharbor token list")
        return _token(r)

    def tokens(self) -> list[TokenRow]:
        with self.cat.engine.connect() as conn:
            rows = conn.execute(sa.select(api_tokens).order_by(api_tokens.c.name)).mappings()
            return [_token(r) for r in rows]

    def delete_token(self, name: str) -> None:
        with self.cat.engine.begin() as conn:
            if not conn.execute(api_tokens.delete().where(api_tokens.c.name == name)).rowcount:
                raise NotFound(f"no token named {name!r}", hint="see pgharbor token list")

    def touch_token(self, token_id: str, at: datetime) -> None:
        with self.cat.engine.begin() as conn:
            conn.execute(
                api_tokens.update().where(api_tokens.c.id == token_id).values(last_used_at=at)
            )

    # -- users -------------------------------------------------------------------
    def add_user(self, name: str, role: str, password_hash: str) -> UserRow:
        t = now()
        with self.cat.engine.begin() as conn:
            if conn.execute(sa.select(web_users.c.name).where(web_users.c.name == name)).first():
                raise Conflict(f"user {name!r} already exists")
            conn.execute(
                web_users.insert().values(
                    name=name, role=role, password_hash=password_hash, created_at=t, modified_at=t
                )
            )
        return self.user(name)

    def user(self, name: str) -> UserRow:
        r = self.find_user(name)
        if r is None:
            raise NotFound(f"no user named {name!r}", hint="see pgharbor user list")
        return r

    def find_user(self, name: str) -> UserRow | None:
        with self.cat.engine.connect() as conn:
            r = (
                conn.execute(sa.select(web_users).where(web_users.c.name == name))
                .mappings()
                .first()
            )
        return _user(r) if r is not None else None

    def users(self) -> list[UserRow]:
        with self.cat.engine.connect() as conn:
            rows = conn.execute(sa.select(web_users).order_by(web_users.c.name)).mappings()
            return [_user(r) for r in rows]

    def set_password(self, name: str, password_hash: str) -> None:
        """A new password also ends every session of the user."""
        with self.cat.engine.begin() as conn:
            done = conn.execute(
                web_users.update()
                .where(web_users.c.name == name)
                .values(password_hash=password_hash, modified_at=now())
            )
            if not done.rowcount:
                raise NotFound(f"no user named {name!r}", hint="see pgharbor user list")
            conn.execute(web_sessions.delete().where(web_sessions.c.user_name == name))

    def remove_user(self, name: str) -> None:
        with self.cat.engine.begin() as conn:
            conn.execute(web_sessions.delete().where(web_sessions.c.user_name == name))
            if not conn.execute(web_users.delete().where(web_users.c.name == name)).rowcount:
                raise NotFound(f"no user named {name!r}", hint="see pgharbor user list")

    # -- sessions ----------------------------------------------------------------
    def add_session(self, id_hash: str, user: str, client: str, expires_at: datetime) -> None:
        t = now()
        with self.cat.engine.begin() as conn:
            conn.execute(web_sessions.delete().where(web_sessions.c.expires_at < t))
            conn.execute(
                web_sessions.insert().values(
                    id_hash=id_hash,
                    user_name=user,
                    client=client[:64],
                    created_at=t,
                    expires_at=expires_at,
                )
            )

    def session(self, id_hash: str) -> SessionRow | None:
        """The session with its user's current role (None: unknown, ended, or its user
        removed). An expired row is returned: the caller refuses it."""
        q = (
            sa.select(web_sessions, web_users.c.role)
            .join(web_users, web_users.c.name == web_sessions.c.user_name)
            .where(web_sessions.c.id_hash == id_hash)
        )
        with self.cat.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        if r is None:
            return None
        return SessionRow(
            r["id_hash"],
            r["user_name"],
            r["role"],
            r["client"],
            aware(r["created_at"]),
            aware(r["expires_at"]),
        )

    def end_session(self, id_hash: str) -> bool:
        with self.cat.engine.begin() as conn:
            done = conn.execute(web_sessions.delete().where(web_sessions.c.id_hash == id_hash))
            return bool(done.rowcount)

    # -- sign-in attempts --------------------------------------------------------
    def failures_since(self, since: datetime, user: str, client: str) -> tuple[int, int]:
        """Failed sign-ins since ``since``: of ``user`` (since its last success), and from
        ``client``."""
        a = signin_attempts.c
        with self.cat.engine.connect() as conn:
            last_ok = conn.execute(
                sa.select(sa.func.max(a.at)).where(a.user_name == user, a.ok.is_(True))
            ).scalar()
            user_from = max(since, aware(last_ok)) if last_ok is not None else since
            by_user = conn.execute(
                sa.select(sa.func.count())
                .select_from(signin_attempts)
                .where(a.user_name == user, a.ok.is_(False), a.at > user_from)
            ).scalar_one()
            by_client = conn.execute(
                sa.select(sa.func.count())
                .select_from(signin_attempts)
                .where(a.client == client, a.ok.is_(False), a.at > since)
            ).scalar_one()
        return int(by_user), int(by_client)

    def add_attempt(self, user: str, client: str, ok: bool, keep_after: datetime) -> None:
        with self.cat.engine.begin() as conn:
            conn.execute(signin_attempts.delete().where(signin_attempts.c.at < keep_after))
            conn.execute(
                signin_attempts.insert().values(
                    at=now(), user_name=user[:128], client=client[:64], ok=ok
                )
            )
