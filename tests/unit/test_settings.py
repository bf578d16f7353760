"""The settings schema: every key declared once (pgharbor.settings_spec), checked and typed
from the file and the environment; the sample config and the reference derive from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgharbor.errors import ConfigError
from pgharbor.settings_spec import (
    BACKENDS,
    BOOL,
    CLUSTER,
    ENCRYPTION,
    INT,
    NUMBER,
    PATH,
    SETTINGS,
    Key,
)


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


# -- one declaration: every key, from the file and from the environment -----------------


def _other_value(key: Key) -> object:
    """A valid value of ``key`` that is not its default."""
    if key.name == "catalog":
        return "sqlite:////srv/harbor/catalog.db"
    if key.kind == PATH:
        return "/srv/harbor/state"
    if key.kind == BOOL:
        return not key.default
    if key.choices:
        return next(c for c in key.choices if c != key.default)
    assert key.low is not None and key.high is not None, key.name
    value = key.high if key.default != key.high else key.low
    return float(value) if key.kind == NUMBER else int(value)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_setting_round_trips_from_the_file_and_the_environment(
    tmp_path: Path, name: str
) -> None:
    from pgharbor.settings import Settings, load_settings
    from pgharbor.settings_doc import toml_value

    key = SETTINGS[name]
    value = _other_value(key)
    assert key.env == f"PGHARBOR_{name.upper()}"
    assert getattr(Settings(), name) == (
        key.default if name != "state_dir" else Settings().state_dir
    )
    config = tmp_path / "pgharbor.toml"
    config.write_text(f"{name} = {toml_value(value)}\n")
    from_file = load_settings(config=str(config), env={})
    from_env = load_settings(env={key.env: str(value)})
    for s, source in (
        (from_file, f"config file {config}"),
        (from_env, f"environment variable {key.env}"),
    ):
        got = getattr(s, name)
        assert got == value and type(got) is type(value), (source, got)
        assert s.sources == {name: source}
    # the environment wins over the file
    other = load_settings(config=str(config), env={key.env: str(key.default or value)})
    assert other.sources[name] == f"environment variable {key.env}"


def test_the_command_line_catalog_wins_and_every_source_is_told(tmp_path: Path) -> None:
    from pgharbor.settings import load_settings

    config = tmp_path / "pgharbor.toml"
    config.write_text('catalog = "sqlite:////a.db"\n')
    env = {"PGHARBOR_CATALOG": "sqlite:////b.db"}
    assert load_settings(config=str(config), env={}).catalog_source == "config"
    assert load_settings(config=str(config), env=env).catalog_source == "env"
    s = load_settings(config=str(config), env=env, catalog="sqlite:////c.db")
    assert (s.catalog, s.catalog_source, s.sources["catalog"]) == (
        "sqlite:////c.db",
        "option",
        "--catalog",
    )
    assert load_settings(env={"PGHARBOR_CATALOG": ""}).catalog is None  # empty: unset
    config.write_text('catalog = ""\ncompression = ""\nstate_dir = ""\n')
    s = load_settings(config=str(config), env={})
    assert (s.catalog, s.compression, s.state_dir) == (
        None,
        "zstd",
        load_settings(env={}).state_dir,
    )


def _too_high(key: Key) -> str:
    assert key.high is not None
    return str(int(key.high) + 1)


NUMERIC = [k for k in SETTINGS.values() if k.kind in (INT, NUMBER)]


@pytest.mark.parametrize("key", NUMERIC, ids=lambda k: k.name)
def test_out_of_range_and_wrong_types_name_the_key_and_the_source(tmp_path: Path, key: Key) -> None:
    from pgharbor.settings import load_settings

    config = tmp_path / "pgharbor.toml"
    cases = [
        (
            f"{key.name} = {_too_high(key)}\n",
            {},
            f"config file {config}: {key.name} must be between",
        ),
        (f"{key.name} = true\n", {}, f"config file {config}: {key.name} must be"),
        (
            "",
            {key.env: _too_high(key)},
            f"environment variable {key.env}: {key.name} must be between",
        ),
        ("", {key.env: "many"}, f"environment variable {key.env}: {key.name} must be"),
    ]
    for text, env, expected in cases:
        config.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_settings(config=str(config), env=env)  # type: ignore[arg-type]
        assert info.value.message.startswith(expected), info.value.message
        assert info.value.code == 3


def test_an_unknown_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    from pgharbor.settings import load_settings

    config = tmp_path / "pgharbor.toml"
    config.write_text("compresion_level = 3\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config=str(config), env={})
    assert info.value.message.startswith(
        f"config file {config}: unknown setting(s) compresion_level (known: catalog, "
    )


def test_settings_fields_and_defaults_come_from_the_declaration() -> None:
    from pgharbor.settings import Settings

    s = Settings()
    for key in SETTINGS.values():
        if key.default is not None:
            assert getattr(s, key.name) == key.default
    assert (s.targets, s.clusters, s.sources, s.catalog) == ({}, {}, {}, None)
    assert s.replace(compression_level=9).compression_level == 9
    with pytest.raises(TypeError, match="compresion"):
        Settings(compresion="zstd")


# -- [clusters.NAME]: a misspelt key never leaves a cluster unencrypted ----------------


def test_a_misspelt_cluster_key_is_refused_not_ignored(tmp_path: Path) -> None:
    from pgharbor.settings import load_settings

    config = tmp_path / "pgharbor.toml"
    config.write_text('[clusters.c1]\nencyption_key_file = "/etc/pgharbor/c1.key"\n')
    s = load_settings(config=str(config), env={})
    with pytest.raises(ConfigError) as info:
        s.encryption_configured("c1", "t1")  # what wal push asks before anything else
    assert info.value.message.startswith(
        f"config file {config}: [clusters.c1] unknown setting(s) encyption_key_file (known: "
    )
    assert s.encryption_configured("c2") is False  # another cluster is not concerned


# -- config sample and the reference -----------------------------------------------------


def test_the_sample_parses_back_to_the_defaults_and_names_every_key(tmp_path: Path) -> None:
    import tomllib

    from pgharbor.settings import Settings, load_settings
    from pgharbor.settings_doc import sample_toml

    sample = sample_toml()
    assert tomllib.loads(sample) == {
        k.name: k.default for k in SETTINGS.values() if k.default is not None
    }
    config = tmp_path / "sample.toml"
    config.write_text(sample)
    loaded, default = load_settings(config=str(config), env={}), Settings()
    assert [getattr(loaded, k) for k in SETTINGS] == [getattr(default, k) for k in SETTINGS]
    lines = sample.splitlines()
    for spec in (SETTINGS, *BACKENDS.values(), ENCRYPTION):
        for key in spec.values():
            assert any(line.lstrip("# ").startswith(f"{key.name} = ") for line in lines), key.name


def test_the_sample_example_tables_are_valid(tmp_path: Path) -> None:
    """Each commented example table, uncommented, passes its own checks."""
    import tomllib

    from pgharbor.settings_check import backend_options, check_table
    from pgharbor.settings_doc import sample_toml

    blocks = sample_toml().split("# [")[1:]
    tables = []
    for block in blocks:
        body = [
            line[2:] for line in block.splitlines()[1:] if line.startswith("# ") and " = " in line
        ]
        tables.append(tomllib.loads("\n".join(body)))
    by_backend = dict(zip(("file", "ssh", "s3"), tables[:3], strict=True))
    for scheme, table in by_backend.items():
        assert set(table) == set(BACKENDS[scheme])
        backend_options(scheme, table)
    assert set(tables[3]) == set(CLUSTER)  # encryption and drill_sql_file
    check_table(CLUSTER, tables[3], "the sample")


def test_the_reference_doc_is_generated_from_the_declaration() -> None:
    from pgharbor.settings_doc import reference_markdown

    committed = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    assert committed == reference_markdown(), (
        "docs/configuration.md is stale: python -m pgharbor.settings_doc > docs/configuration.md"
    )
    for spec in (SETTINGS, *BACKENDS.values(), ENCRYPTION):
        for key in spec.values():
            assert f"| `{key.name}` |" in committed
