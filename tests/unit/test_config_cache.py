"""The parsed config file kept per user (a wal push per segment skips tomllib): used only
for the very text it was parsed from, and never for a file that holds a secret."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pgharbor import settings as settings_mod
from pgharbor.settings import load_settings


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def _no_toml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tomllib", None)  # import tomllib now fails


def test_parsed_once_then_from_the_cache(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "pgharbor.toml"
    config.write_text("compression_level = 7\n[targets.disk]\ntimeout = 5\n")
    first = load_settings(config=str(config), env={})
    assert first.compression_level == 7
    assert len(list((cache_home / "pgharbor").iterdir())) == 1
    _no_toml(monkeypatch)
    again = load_settings(config=str(config), env={})
    assert again.as_dict() == first.as_dict()
    # a changed text is parsed again (here: it cannot be, so it says so)
    config.write_text("compression_level = 9\n")
    with pytest.raises(ImportError):
        load_settings(config=str(config), env={})


def test_changed_text_is_never_served_from_the_cache(tmp_path: Path, cache_home: Path) -> None:
    config = tmp_path / "pgharbor.toml"
    config.write_text("compression_level = 7\n")
    assert load_settings(config=str(config), env={}).compression_level == 7
    config.write_text("compression_level = 9\n")
    assert load_settings(config=str(config), env={}).compression_level == 9


def test_a_file_with_a_secret_is_not_copied(tmp_path: Path, cache_home: Path) -> None:
    config = tmp_path / "pgharbor.toml"
    config.write_text('[targets.s3]\nsecret_access_key = "hunter2"\n')
    load_settings(config=str(config), env={})
    config.write_text('catalog = "postgresql://harbor:hunter2@db/harbor"\n')
    load_settings(config=str(config), env={})
    assert not (cache_home / "pgharbor").exists() or not any(
        "hunter2" in p.read_text() for p in (cache_home / "pgharbor").iterdir()
    )
    assert settings_mod._has_secret({"catalog": "sqlite:///x.db"}) is False
