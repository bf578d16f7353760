"""Settings: the config file (TOML) and environment overrides, validated, passed in
explicitly. Every key is declared once in pgharbor.settings_spec (the reference is
docs/configuration.md; ``pgharbor config sample`` prints a commented file). Cheap to
import (os only): the archive hot path loads it; ``tomllib`` only with a config file.

Precedence: defaults < config file < environment (``PGHARBOR_<NAME>``) < ``--catalog``.
The ``[targets.NAME]`` and ``[clusters.NAME]`` tables come from the config file only;
they are checked when used (a bad option on one target fails that target's copies, not
every command) and all at once by ``pgharbor config check``.
"""

from __future__ import annotations

import os

from pgharbor.errors import ConfigError
from pgharbor.plain import FrozenRecord, tidy_path
from pgharbor.settings_check import TargetOptions, check, refuse_unknown
from pgharbor.settings_spec import CLUSTER, SECTIONS, SETTINGS, is_secret, masked

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

COMPRESSIONS = SETTINGS["compression"].choices
__all__ = ["COMPRESSIONS", "Settings", "is_secret", "load_settings", "masked"]


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return tidy_path(os.path.join(base, "pgharbor"))


class Settings(FrozenRecord):
    """The fields are the settings of pgharbor.settings_spec.SETTINGS (their defaults
    from there), then: ``catalog_source``, where ``catalog`` came from (``"config"``,
    ``"env"``, ``"option"`` (--catalog), or None: built in code); ``config_file`` as
    given; ``sources``, where each value that is not a default came from ("config file
    PATH", "environment variable NAME", "--catalog"); ``targets`` and ``clusters``, the
    tables. ``state_dir`` is always set (tidied like a pathlib path). ``replace()``
    gives a copy with some fields changed. The repr masks secrets: the catalog's
    password and secret options of the tables. Fields are not changed once built."""

    __slots__ = (*SETTINGS, "catalog_source", "config_file", "sources", *SECTIONS)
    # the types of the fields, for mypy (the values and defaults: settings_spec)
    catalog: str | None
    state_dir: str
    compression: str
    compression_level: int
    catalog_timeout: float
    target_timeout: float
    async_workers: int
    async_wait: float
    async_idle_exit: float
    prefetch_depth: int
    prefetch_workers: int
    prefetch_idle_exit: float
    verify_grace: float
    verify_content_period: float
    log_file: str | None
    scheduler_max_jobs: int
    scheduler_max_backups: int
    scheduler_poll: float
    scheduler_lease: float
    scheduler_grace: float
    scheduler_stop_timeout: float
    scheduler_max_attempts: int
    metrics_cache: float
    events_interval: float
    drill_dir: str | None
    drill_timeout: float
    web_session_ttl: float
    web_secret_file: str | None
    web_signin_limit: int
    web_signin_window: float
    metrics_anonymous: bool
    catalog_source: str | None
    config_file: str | None
    sources: dict[str, str]
    targets: dict[str, dict[str, Any]]
    clusters: dict[str, dict[str, Any]]

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(self.__slots__))
        if unknown:
            raise TypeError(f"Settings() got unknown field(s) {', '.join(unknown)}")
        for name in self.__slots__:
            value = values.get(name)
            if value is None:
                key = SETTINGS.get(name)
                value = key.default if key is not None else {} if name in _DICTS else None
            setattr(self, name, value)
        if self.state_dir is None:
            self.state_dir = default_state_dir()

    def __repr__(self) -> str:
        from pgharbor.catalog.urls import redact_conninfo

        shown: dict[str, object] = {
            **self.as_dict(),
            "catalog": None if self.catalog is None else redact_conninfo(self.catalog),
            "targets": {n: masked(t) for n, t in self.targets.items()},
            "clusters": {n: masked(c) for n, c in self.clusters.items()},
        }
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (as dataclasses.replace did); the changed
        fields no longer have a source."""
        sources = {k: v for k, v in self.sources.items() if k not in changes}
        return Settings(**{**self.as_dict(), "sources": sources, **changes})

    def _where(self, section: str) -> str:
        return self.sources.get(section) or "settings"

    def target_options(self, name: str) -> TargetOptions:
        """The storage backend's options (encryption settings are not the backend's),
        with ``timeout`` from target_timeout unless the table sets it. The result names
        its table and where it came from, for the backend's option check."""
        table = self.targets.get(name, {})
        opts = {k: v for k, v in table.items() if not k.startswith("encryption")}
        default = () if "timeout" in opts else ("timeout",)
        opts.setdefault("timeout", self.target_timeout)
        return TargetOptions(opts, f"[targets.{name}] ", self._where("targets"), default)

    def cluster_options(self, name: str) -> dict[str, Any]:
        """The cluster's table; a key that is not a cluster setting is refused (a
        misspelt encryption key must not leave the cluster unencrypted)."""
        table = self.clusters.get(name, {})
        refuse_unknown(table, CLUSTER, self._where("clusters"), f"[clusters.{name}] ")
        return dict(table)

    def encryption_configured(self, cluster: str, target: str | None = None) -> bool:
        """Whether the cluster's or the target's section has any encryption setting: when
        neither has, pgharbor.crypto (not imported otherwise) has no keys to give."""
        tables = [self.cluster_options(cluster)]
        if target is not None:
            tables.append(self.targets.get(target, {}))
        return any(k.startswith("encryption") for t in tables for k in t)

    def require_catalog(self) -> str:
        if not self.catalog:
            raise ConfigError(
                "no catalog configured",
                hint="pass --catalog URL, set PGHARBOR_CATALOG, or set catalog in the config file",
            )
        return self.catalog


_DICTS = frozenset((*SECTIONS, "sources"))  # fields that default to an empty dict
_KNOWN = {**SETTINGS, **dict.fromkeys(SECTIONS)}  # what a config file may hold


def _read_config(config: str) -> dict[str, Any]:
    try:
        with open(config) as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"config file {config} does not exist") from None
    except PermissionError:
        raise ConfigError(f"config file {config} is not readable") from None
    import tomllib  # only with a config file (~5 ms of the hot path)

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {config} is not valid TOML: {exc}") from None
    refuse_unknown(raw, _KNOWN, f"config file {config}")
    return raw


def load_settings(
    *, catalog: str | None = None, config: str | None = None, env: dict[str, str] | None = None
) -> Settings:
    """Build settings: defaults < config file < environment < command-line options.
    Every value is checked for its type and range: one ConfigError naming the setting
    and where it came from."""
    env = dict(os.environ) if env is None else env
    config = config or env.get("PGHARBOR_CONFIG")
    raw = _read_config(config) if config else {}
    where = dict.fromkeys(raw, f"config file {config}")
    for key in SETTINGS.values():
        if key.env and env.get(key.env):
            raw[key.name], where[key.name] = env[key.env], f"environment variable {key.env}"
    if catalog:
        raw["catalog"], where["catalog"] = catalog, "--catalog"
    values: dict[str, Any] = {}
    for key in SETTINGS.values():
        if key.name in raw:
            came = where[key.name]
            value = check(key, raw[key.name], came, text=came.startswith("environment"))
            if value != "":
                values[key.name] = value
    for section in SECTIONS:
        value = raw.get(section, {})
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(f"{where[section]}: [{section}.NAME] sections must be tables")
        values[section] = value
    if "catalog" in values:
        came = where["catalog"]
        values["catalog_source"] = (
            "config" if came.startswith("config") else "option" if came == "--catalog" else "env"
        )
    sources = {k: where[k] for k in values if k in where}
    return Settings(config_file=config or None, sources=sources, **values)
