"""Typed options per storage backend (no servers: a backend is built without connecting).

Every option of [targets.NAME] and of a target URL's query goes through the backend's
declared spec (pgharbor.settings_spec.BACKENDS) before the backend is built: a wrong one
is one error naming the target, the key and where it came from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pgharbor.errors import ConfigError, UsageError
from pgharbor.settings import Settings, load_settings
from pgharbor.settings_doc import toml_value
from pgharbor.settings_spec import BACKENDS, MiB
from pgharbor.storage import open_storage

URLS = {"file": "file:///srv/archive", "ssh": "ssh://u@127.0.0.1:1/srv", "s3": "s3://bkt/p"}


def _settings(tmp_path: Path, table: dict[str, Any], extra: str = "") -> tuple[Settings, Path]:
    config = tmp_path / "pgharbor.toml"
    body = "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items())
    config.write_text(f"{extra}[targets.t]\n{body}")
    return load_settings(config=str(config), env={}), config


def _ssh(attr: str) -> Callable[[Any], Any]:
    return lambda s: getattr(s.target, attr)


# (backend, key, a valid value that is not the default, how to read it back, what it gives)
VALUES: list[tuple[str, str, Any, Callable[[Any], Any], Any]] = [
    ("file", "timeout", 2, lambda s: s.url, URLS["file"]),  # accepted; local I/O has none
    ("ssh", "key_file", "~/.ssh/other", _ssh("key_file"), str(Path.home() / ".ssh/other")),
    ("ssh", "known_hosts", "/etc/kh", _ssh("known_hosts"), "/etc/kh"),
    ("ssh", "timeout", 2.5, _ssh("timeout"), 2.5),
    ("s3", "endpoint_url", "http://127.0.0.1:9", lambda s: s.endpoint_url, "http://127.0.0.1:9"),
    ("s3", "region", "eu-1", lambda s: s.region, "eu-1"),
    ("s3", "addressing_style", "path", lambda s: s.addressing_style, "path"),
    ("s3", "profile", "archive", lambda s: s.profile, "archive"),
    ("s3", "timeout", 4, lambda s: s.timeout, 4.0),
    ("s3", "multipart_threshold", "16MiB", lambda s: s.multipart_threshold, 16 * MiB),
    ("s3", "multipart_chunksize", 6 * MiB, lambda s: s.multipart_chunksize, 6 * MiB),
    ("s3", "access_key_id", "AKIA1", lambda s: s._secrets[0], "AKIA1"),
    ("s3", "secret_access_key", "CANARY-s", lambda s: s._secrets[1], "CANARY-s"),
    ("s3", "session_token", "CANARY-t", lambda s: s._secrets[2], "CANARY-t"),
]


def test_every_declared_option_is_covered() -> None:
    covered = {(b, k) for b, k, *_ in VALUES}
    assert covered == {(b, k) for b in URLS for k in BACKENDS[b]}


@pytest.mark.parametrize(("backend", "key", "value", "read", "expected"), VALUES)
def test_an_option_from_the_table_and_from_the_url_reaches_the_backend_typed(
    tmp_path: Path,
    backend: str,
    key: str,
    value: Any,
    read: Callable[[Any], Any],
    expected: Any,
) -> None:
    s, _ = _settings(tmp_path, {key: value})
    built = open_storage(URLS[backend], s.target_options("t"))
    assert read(built) == expected and type(read(built)) is type(expected)
    if backend != "file" and BACKENDS[backend][key].in_url:  # the same through the query
        built = open_storage(f"{URLS[backend]}?{key}={value}", {})
        assert read(built) == expected and type(read(built)) is type(expected)


@pytest.mark.parametrize(
    ("backend", "table", "expected"),
    [
        ("file", {"bogus": 1}, "unknown file option(s) bogus (known: timeout)"),
        ("file", {"fsync": False}, "unknown file option(s) fsync"),
        ("file", {"region": "x"}, "unknown file option(s) region"),  # another backend's
        ("file", {"timeout": "10"}, "timeout must be a number, got a string"),
        ("ssh", {"region": "x"}, "unknown ssh option(s) region (known: key_file, "),
        ("ssh", {"timeout": 0}, "timeout must be between 0.1 and 3600, got 0"),
        ("ssh", {"key_file": 5}, "key_file must be a string, got 5"),
        ("ssh", {"known_hosts": ["/a"]}, "known_hosts must be a string, got an array"),
        ("s3", {"key_file": "/k"}, "unknown s3 option(s) key_file"),
        ("s3", {"addressing_style": "sideways"}, "must be one of path, virtual, auto"),
        ("s3", {"multipart_chunksize": "1MiB"}, "must be between 5MiB and 5GiB, got 1MiB"),
        ("s3", {"multipart_threshold": "lots"}, "multipart_threshold must be a size"),
        ("s3", {"multipart_threshold": True}, "must be a size"),
        ("s3", {"timeout": True}, "timeout must be a number, got a boolean"),
        ("s3", {"secret_access_key": 12345}, "secret_access_key must be a string, got an integer"),
        ("s3", {"secret_access_key": ["CANARY"]}, "must be a string, got an array"),
    ],
)
def test_a_wrong_option_names_the_target_the_key_and_the_file(
    tmp_path: Path, backend: str, table: dict[str, Any], expected: str
) -> None:
    s, config = _settings(tmp_path, table)
    with pytest.raises(ConfigError) as info:
        open_storage(URLS[backend], s.target_options("t"))
    message = info.value.message
    assert message.startswith(f"config file {config}: [targets.t] "), message
    assert expected in message and "CANARY" not in message and "12345" not in message, message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ssh://u@h/r?region=x", "target URL ssh://u@h/r: unknown ssh option(s) region"),
        ("ssh://u@h/r?timeout=abc", "target URL ssh://u@h/r: timeout must be a number, got 'abc'"),
        ("ssh://u@h/r?timeout=99999", "timeout must be between 0.1 and 3600, got 99999"),
        ("s3://bkt/p?key_file=/k", "target URL s3://bkt/p: unknown s3 option(s) key_file"),
        ("s3://bkt/p?multipart_threshold=lots", "multipart_threshold must be a size"),
        ("s3://bkt/p?addressing_style=sideways", "must be one of path, virtual, auto"),
    ],
)
def test_a_wrong_url_query_setting_is_a_usage_error_naming_it(url: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        open_storage(url, {})
    assert expected in info.value.message, info.value.message
    assert type(info.value) is UsageError  # the URL is the command line's, not the file's


def test_a_credential_in_the_query_is_refused_by_the_spec_too() -> None:
    """validate_url refuses it before any backend; a backend built directly refuses it too."""
    from pgharbor.storage.s3 import S3Storage

    with pytest.raises(UsageError, match="is a credential: it does not belong in the URL"):
        S3Storage("s3://bkt/p?session_token=CANARY")


@pytest.mark.parametrize("backend", ["ssh", "s3"])
def test_timeout_precedence_is_table_then_url_then_target_timeout(
    tmp_path: Path, backend: str
) -> None:
    """target_timeout is only a default: a URL's own ?timeout= is not overridden by it."""

    def timeout(storage: Any) -> float:
        return float(storage.target.timeout if backend == "ssh" else storage.timeout)

    url = f"{URLS[backend]}?timeout=2"
    s, _ = _settings(tmp_path, {}, extra="target_timeout = 30\n")
    assert timeout(open_storage(URLS[backend], s.target_options("t"))) == 30
    assert timeout(open_storage(url, s.target_options("t"))) == 2
    s, _ = _settings(tmp_path, {"timeout": 7}, extra="target_timeout = 30\n")
    assert timeout(open_storage(url, s.target_options("t"))) == 7


def test_target_options_stay_a_plain_mapping(tmp_path: Path) -> None:
    s, config = _settings(tmp_path, {"region": "x", "encryption_key_file": "/k"})
    opts = s.target_options("t")
    assert opts == {"region": "x", "timeout": s.target_timeout}  # no encryption key
    assert (opts.section, opts.where, opts.defaults) == (
        "[targets.t] ",
        f"config file {config}",
        frozenset({"timeout"}),
    )
    built = s.replace(targets={"t": {"bogus": 1}}).target_options("t")
    with pytest.raises(ConfigError, match=r"^settings: \[targets.t\] unknown file option"):
        open_storage(URLS["file"], built)  # a table built in code has no file to name
