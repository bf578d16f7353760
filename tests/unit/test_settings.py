"""The settings schema: config file keys are checked, values typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgharbor.errors import ConfigError


def test_config_file_settings_are_checked(tmp_path: Path) -> None:
    from pgharbor.settings import load_settings

    good = tmp_path / "good.toml"
    good.write_text('catalog = "sqlite:////x.db"\nasync_wait = 5\nprefetch_depth = 0\n')
    s = load_settings(config=str(good), env={})
    assert (s.async_wait, s.prefetch_depth, s.catalog) == (5.0, 0, "sqlite:////x.db")
    bad = tmp_path / "bad.toml"
    bad.write_text("foo = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(config=str(bad), env={})
    bad.write_text("config_file = '/etc/x'\n")  # not a setting a file can hold
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(config=str(bad), env={})


# -- D17: a value of the wrong type is refused, never coerced --------------------------


@pytest.mark.parametrize(
    ("line", "key", "expected"),
    [
        ("compression_level = 3.9", "compression_level", "must be an integer, got 3.9"),
        ("async_workers = true", "async_workers", "must be an integer, got a boolean"),
        ('prefetch_depth = "3"', "prefetch_depth", "must be an integer, got a string"),
        ("catalog_timeout = true", "catalog_timeout", "must be a number, got a boolean"),
        ('async_wait = "abc"', "async_wait", "must be a number, got a string"),
        ("target_timeout = [1]", "target_timeout", "must be a number, got an array"),
        ("prefetch_depth = 100000", "prefetch_depth", "must be between 0 and 256"),
        ("catalog_timeout = nan", "catalog_timeout", "must be between 0.1 and 600"),
        ("catalog = 5", "catalog", "must be a string, got 5"),
        ("state_dir = true", "state_dir", "must be a string, got a boolean"),
        ("compression = 1", "compression", "must be a string, got 1"),
        ('compression = "lz4"', "compression", "must be one of zstd, none"),
        ("targets = 5", "targets", "sections must be tables"),
    ],
)
def test_a_wrong_type_is_one_error_naming_the_key_and_the_file(
    tmp_path: Path, line: str, key: str, expected: str
) -> None:
    from pgharbor.settings import load_settings

    config = tmp_path / "pgharbor.toml"
    config.write_text(line + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config=str(config), env={})
    message = info.value.message
    assert message.startswith(f"config file {config}: ") and key in message, message
    assert expected in message, message


def test_numbers_keep_their_type_and_the_environment_gives_text(tmp_path: Path) -> None:
    from pgharbor.settings import load_settings

    config = tmp_path / "pgharbor.toml"
    config.write_text("catalog_timeout = 3\nasync_wait = 2.5\ncompression_level = -7\n")
    s = load_settings(config=str(config), env={})
    assert (s.catalog_timeout, s.async_wait, s.compression_level) == (3.0, 2.5, -7)
    assert type(s.catalog_timeout) is float and type(s.compression_level) is int
    assert load_settings(env={"PGHARBOR_COMPRESSION_LEVEL": "5"}).compression_level == 5
    with pytest.raises(ConfigError) as info:
        load_settings(env={"PGHARBOR_COMPRESSION_LEVEL": "3.9"})
    assert info.value.message == (
        "environment variable PGHARBOR_COMPRESSION_LEVEL: compression_level must be an "
        "integer, got '3.9'"
    )


def test_a_misplaced_secret_is_not_echoed(tmp_path: Path) -> None:
    from pgharbor.settings import load_settings

    config = tmp_path / "pgharbor.toml"
    for text in ('async_wait = "CANARY-S3cret"\n', 'catalog = {password = "CANARY-S3cret"}\n'):
        config.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_settings(config=str(config), env={})
        assert "CANARY" not in info.value.message and str(config) in info.value.message


# -- secrets never in a repr -----------------------------------------------------------

SECRET_CONFIG = """\
catalog = "postgresql://harbor:CANARY1@db.example/catalog?password=CANARY2&sslmode=require"
[targets.s3]
endpoint_url = "https://s3.example.net"
access_key_id = "CANARY3"
secret_access_key = "CANARY4"
session_token = "CANARY5"
[targets.other]
ftp_password = "CANARY6"
[clusters.c1]
encryption_key_file = "/etc/pgharbor/c1.key"
api_token = "CANARY7"
"""


def test_reprs_never_show_a_secret(tmp_path: Path) -> None:
    from pgharbor.catalog.urls import parse_catalog_url
    from pgharbor.settings import load_settings
    from pgharbor.storage.file import FileStorage
    from pgharbor.storage.s3 import S3Storage
    from pgharbor.storage.ssh import SSHStorage

    config = tmp_path / "pgharbor.toml"
    config.write_text(SECRET_CONFIG)
    s = load_settings(config=str(config), env={})
    assert s.targets["s3"]["secret_access_key"] == "CANARY4"  # the values are all there
    assert s.catalog is not None
    shown = [
        repr(s),
        str(s),
        repr(parse_catalog_url(s.catalog)),
        repr(S3Storage("s3://bucket/prefix?region=eu-1", **s.target_options("s3"))),
        repr(SSHStorage("ssh://archive@backup.example:2222/srv?key_file=/k")),
        repr(FileStorage(f"file://{tmp_path}")),
    ]
    assert not [text for text in shown if "CANARY" in text], shown
    # what is not secret stays visible
    assert "harbor:***@db.example" in shown[0] and "sslmode=require" in shown[0]
    assert "https://s3.example.net" in shown[0] and "/etc/pgharbor/c1.key" in shown[0]
    assert "region=eu-1" in shown[3] and "key_file=/k" in shown[4]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db?password=pw&port=5", "postgresql://u@h/db?password=***&port=5"),
        ("postgresql://u:p@w:x@h/db?sslpassword=k", "postgresql://u:***@h/db?sslpassword=***"),
        ("postgresql://u:pa?ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://h/db?host=/tmp&port=1", "postgresql://h/db?host=/tmp&port=1"),
        ("host=h password=pw dbname=d", "host=h password=*** dbname=d"),
        ("host=h password = 'p w\\' x' user=u", "host=h password = *** user=u"),
        ("host=h PassWord=pw", "host=h PassWord=***"),
        ("host=h passfile=/p/.pgpass", "host=h passfile=/p/.pgpass"),
    ],
)
def test_redact_conninfo_hides_every_password_form(text: str, shown: str) -> None:
    from pgharbor.catalog.urls import redact_conninfo

    assert redact_conninfo(text) == shown


@pytest.mark.parametrize(
    ("url", "stripped", "had"),
    [
        ("postgresql://u:pw@h:5/db", "postgresql://u@h:5/db", True),
        (
            "postgresql://u@/db?host=/s&password=pw&port=5",
            "postgresql://u@/db?host=/s&port=5",
            True,
        ),
        ("postgresql://u:pw@h?password=x", "postgresql://u@h", True),
        ("postgresql://u:pa?ss@h/db", "postgresql://u@h/db", True),
        ("postgresql://u@h/db?sslmode=require", "postgresql://u@h/db?sslmode=require", False),
    ],
)
def test_strip_password_leaves_a_working_url(url: str, stripped: str, had: bool) -> None:
    from pgharbor.catalog.urls import strip_password

    assert strip_password(url) == (stripped, had)
