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
