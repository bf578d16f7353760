"""token and user commands, run as the real CLI on a SQLite catalog: a token is printed
once and works; a password comes from stdin or a terminal prompt, never an argument; no
secret is in any listing; each change is an audit event naming the CLI user."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgharbor.services import access_tokens, users
from pgharbor.services.context import Services
from pgharbor.settings import load_settings
from tests.fixtures.catalogs import init_catalog

PGHARBOR = str(Path(sys.executable).with_name("pgharbor"))


class Cli:
    def __init__(self, tmp: Path) -> None:
        self.url = f"sqlite:///{tmp}/catalog.db"
        init_catalog(self.url)
        self.env = {"PGHARBOR_STATE_DIR": str(tmp / "state"), "PATH": "/usr/bin:/bin"}
        self.svc = Services(load_settings(catalog=self.url))

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PGHARBOR, "--catalog", self.url, *args],
            capture_output=True,
            text=True,
            env=self.env,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            check=False,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_token_lifecycle(cli: Cli) -> None:
    made = cli.run("token", "create", "ci", "--scope", "operate", "--expires", "90d")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("phb_") and len(made.stdout.splitlines()) == 1
    assert "not shown again" in made.stderr and token not in made.stderr
    assert access_tokens.authenticate(cli.svc, token).scope == "operate"
    listed = cli.run("token", "list", "--json")
    assert token not in listed.stdout and token[-20:] not in listed.stdout
    rows = json.loads(listed.stdout)
    assert [(t["name"], t["scope"], t["expired"]) for t in rows] == [("ci", "operate", False)]
    assert rows[0]["created_by"].startswith("cli ")
    again = cli.run("token", "create", "ci", "--scope", "read")
    assert again.returncode == 7 and "already exists" in again.stderr
    bad = cli.run("token", "create", "x", "--scope", "read", "--expires", "soon")
    assert bad.returncode == 2 and "bad --expires" in bad.stderr
    assert cli.run("token", "revoke", "ci").returncode == 0
    from pgharbor.errors import Unauthenticated

    with pytest.raises(Unauthenticated):
        access_tokens.authenticate(cli.svc, token)
    assert cli.run("token", "revoke", "ci").returncode == 6
    events = json.loads(cli.run("events", "--json").stdout)
    assert [(e["kind"], e["actor"][:4]) for e in events] == [
        ("token_create", "cli "),
        ("token_revoke", "cli "),
    ]


def test_user_passwords_come_from_stdin_never_an_argument(cli: Cli) -> None:
    secret = "a password long enough"
    r = cli.run("user", "add", "alice", "--role", "admin", "--password-stdin", stdin=secret + "\n")
    assert r.returncode == 0, r.stderr
    assert users.sign_in(cli.svc, "alice", secret, "x", 60).role == "admin"
    r = cli.run("user", "add", "bob", "--role", "read")  # no terminal, no --password-stdin
    assert r.returncode == 2 and "--password-stdin" in r.stderr
    r = cli.run("user", "add", "bob", "--role", "read", "--password", secret)
    assert r.returncode == 2 and "No such option" in r.stderr
    r = cli.run("user", "add", "bob", "--role", "read", "--password-stdin", stdin="short\n")
    assert r.returncode == 2 and "too short" in r.stderr
    r = cli.run("user", "passwd", "alice", "--password-stdin", stdin="another long one\n")
    assert r.returncode == 0, r.stderr
    assert users.sign_in(cli.svc, "alice", "another long one", "x", 60).user == "alice"
    listed = cli.run("user", "list", "--json").stdout
    assert secret not in listed and "argon2" not in listed
    assert [u["name"] for u in json.loads(listed)] == ["alice"]
    assert cli.run("user", "remove", "alice").returncode == 0
    assert json.loads(cli.run("user", "list", "--json").stdout) == []
