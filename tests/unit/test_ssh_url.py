"""ssh:// URL and option parsing (no server needed)."""

from __future__ import annotations

import getpass
import os

import pytest

from pgharbor.errors import UsageError
from pgharbor.storage import open_storage
from pgharbor.storage.ssh import SSHStorage, parse_ssh_url


def test_full_url() -> None:
    t = parse_ssh_url("ssh://backup@db1.example.com:2222/srv/wal/archive")
    assert (t.user, t.host, t.port, t.root) == (
        "backup",
        "db1.example.com",
        2222,
        "/srv/wal/archive",
    )
    assert t.key_file is None
    assert t.known_hosts == os.path.expanduser("~/.ssh/known_hosts")
    assert t.timeout == 10
    assert t.hostkey_name == "[db1.example.com]:2222"


def test_defaults_port_22_and_current_user() -> None:
    t = parse_ssh_url("ssh://host/wal/")
    assert (t.user, t.port, t.root) == (getpass.getuser(), 22, "/wal")
    assert t.hostkey_name == "host"


def test_query_options_and_keyword_override() -> None:
    url = "ssh://u@h:22/r?key_file=/k/id&known_hosts=/k/kh&timeout=2.5"
    t = parse_ssh_url(url)
    assert (t.key_file, t.known_hosts, t.timeout) == ("/k/id", "/k/kh", 2.5)
    t = parse_ssh_url(url, {"timeout": 7, "key_file": "~/other"})
    assert t.timeout == 7
    assert t.key_file == os.path.expanduser("~/other")
    assert t.known_hosts == "/k/kh"


def test_percent_encoding_and_ipv6() -> None:
    t = parse_ssh_url("ssh://us%40er@[::1]:2200/my%20wal")
    assert (t.user, t.host, t.port, t.root) == ("us@er", "::1", 2200, "/my wal")
    assert t.hostkey_name == "[::1]:2200"


def test_connection_key_ignores_root_and_timeout() -> None:
    a = parse_ssh_url("ssh://u@h:2/a?timeout=1")
    b = parse_ssh_url("ssh://u@h:2/b?timeout=9")
    c = parse_ssh_url("ssh://u@h:2/b?key_file=/k")
    assert a.conn_key == b.conn_key != c.conn_key


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("ssh://u@h:22/", None, "no root folder"),
        ("ssh:///r", None, "use ssh://USER@HOST"),
        ("ssh://u@h:99999/r", None, "invalid port"),
        ("ssh://u@h/r?password=x", None, "unknown ssh option(s) password"),
        ("ssh://u@h/r", {"compress": True}, "unknown ssh option(s) compress"),
        ("ssh://u@h/r?timeout=abc", None, "timeout must be"),
        ("ssh://u@h/r", {"timeout": 0}, "timeout must be"),
    ],
)
def test_bad_urls(url: str, options: dict[str, object] | None, message: str) -> None:
    with pytest.raises(UsageError) as ei:
        parse_ssh_url(url, options)
    assert message in str(ei.value)


def test_password_refused_without_echo() -> None:
    with pytest.raises(UsageError) as ei:
        parse_ssh_url("ssh://u:s3cret@h/r")
    assert "passwords are not supported" in str(ei.value)
    assert "s3cret" not in str(ei.value)


def test_factory_builds_without_connecting() -> None:
    s = open_storage("ssh://u@127.0.0.1:1/r", {"timeout": 1})
    assert isinstance(s, SSHStorage)
    assert s.root == "/r"
    with pytest.raises(UsageError):
        s.put("../escape", b"x")  # keys are checked before any connection
