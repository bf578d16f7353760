"""config check and config sample: the whole configuration checked at once, against the
declarations of pgharbor.settings_spec.

``check_config`` takes settings that loaded (the top-level keys and the environment are
checked by loading them), then checks every ``[targets.NAME]`` table against the backend
of the catalog's target of that name (every backend's options when the catalog cannot
tell) and every ``[clusters.NAME]`` table (its keys read, as a command would). The first
problem is one ConfigError naming the key (exit 3). Secrets are never in the result.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgharbor.errors import CatalogError, ConfigError, PgharborError
from pgharbor.settings_check import TargetOptions, check
from pgharbor.settings_spec import (
    BACKENDS,
    DOCUMENTED_BACKENDS,
    OTHER_ENV,
    SETTINGS,
    is_secret,
    masked,
)

if TYPE_CHECKING:
    from pgharbor.services.context import Services
    from pgharbor.settings import Settings


@dataclass
class SettingValue:
    name: str
    value: Any  # as shown: the catalog's password masked
    source: str  # "default", "config file PATH", "environment variable NAME", "--catalog"


@dataclass
class SectionCheck:
    section: str  # "[targets.NAME]", "[clusters.NAME]"
    backends: list[str]  # a target's backend, or those its options fit (no catalog)
    options: dict[str, Any]  # secrets masked
    keys: list[str] = field(default_factory=list)  # encryption keys: id and where from
    encryption_required: bool | None = None  # None: no key configured here
    note: str | None = None


@dataclass
class ConfigCheck:
    config_file: str | None
    catalog: str | None  # its password masked
    catalog_reachable: bool
    settings: list[SettingValue]
    targets: list[SectionCheck]
    clusters: list[SectionCheck]
    notes: list[str]


def sample_config() -> str:
    """A commented config file with every key and its default."""
    from pgharbor.settings_doc import sample_toml

    return sample_toml()


def check_config(svc: Services, env: Mapping[str, str] | None = None) -> ConfigCheck:
    s = svc.settings
    env = os.environ if env is None else env
    notes: list[str] = []
    catalog, reachable, targets, clusters = _catalog(svc, env, notes)
    return ConfigCheck(
        config_file=s.config_file,
        catalog=catalog,
        catalog_reachable=reachable,
        settings=_settings(s, env),
        targets=[_section(_target, s, name, targets) for name in s.targets],
        clusters=[_section(_cluster, s, name, clusters) for name in s.clusters],
        notes=notes + _env_notes(s, env) + _mode_notes(s),
    )


def _settings(s: Settings, env: Mapping[str, str]) -> list[SettingValue]:
    from pgharbor.catalog.urls import redact_conninfo

    out = []
    for key in SETTINGS.values():
        value = getattr(s, key.name)
        if key.name == "catalog" and value is not None:
            value = redact_conninfo(value)
        out.append(
            SettingValue(key.name, "***" if key.secret else value, _source(s, env, key.name))
        )
    return out


def _source(s: Settings, env: Mapping[str, str], name: str) -> str:
    source = s.sources.get(name, "default")
    if name == "catalog" and source == "--catalog" and env.get("PGHARBOR_CATALOG") == s.catalog:
        return "environment variable PGHARBOR_CATALOG"  # (Click passes it as --catalog)
    return source


def _catalog(
    svc: Services, env: Mapping[str, str], notes: list[str]
) -> tuple[str | None, bool, dict[str, str] | None, set[str] | None]:
    """(the catalog as shown, reachable, its targets' URLs by name, its clusters)."""
    from pgharbor.catalog.urls import parse_catalog_url, redact_conninfo

    s = svc.settings
    fallback = "[targets.NAME] tables are checked against the options of every backend"
    if not s.catalog:
        notes.append(f"no catalog configured: {fallback}")
        return None, False, None, None
    try:
        parse_catalog_url(s.catalog)
    except ConfigError as exc:
        raise ConfigError(f"{_source(s, env, 'catalog')}: catalog: {exc.message}") from None
    try:
        targets = {t.name: t.url for t in svc.catalog.targets()}
        clusters = {c.name for c in svc.catalog.clusters()}
    except CatalogError as exc:
        notes.append(f"catalog not reachable ({exc.message}): {fallback}")
        return redact_conninfo(s.catalog), False, None, None
    return redact_conninfo(s.catalog), True, targets, clusters


def _section(
    check_one: Callable[[Settings, str, Any], SectionCheck], s: Settings, name: str, known: Any
) -> SectionCheck:
    """One table's check; any problem becomes the one ConfigError line of config check."""
    try:
        return check_one(s, name, known)
    except ConfigError:
        raise
    except PgharborError as exc:  # a key file that is unreadable, a bad URL query, ...
        raise ConfigError(str(exc), hint=exc.hint) from None


def _target(s: Settings, name: str, catalog: dict[str, str] | None) -> SectionCheck:
    from pgharbor.storage.factory import open_storage

    section, table = f"[targets.{name}]", s.targets[name]
    options = s.target_options(name)
    note = None
    if catalog is not None and name in catalog:
        url = catalog[name]
        open_storage(url, options)  # the options and the URL query, as every command
        backends = [url.partition("://")[0]]  # (open_storage refused any other form)
    else:
        if catalog is not None:
            note = "no target of this name in the catalog"
        backends = _fitting(options)
    return _checked(section, backends, table, note)


def _fitting(options: TargetOptions) -> list[str]:
    """The backends whose options ``options`` are (without the catalog, the backend of a
    target is unknown): a key no backend has, a wrong value, or keys of different
    backends are one ConfigError."""
    own = {k: v for k, v in options.items() if k not in options.defaults}
    where, section = options.where, options.section
    for name, value in own.items():
        declared = [BACKENDS[b][name] for b in DOCUMENTED_BACKENDS if name in BACKENDS[b]]
        if not declared:
            raise ConfigError(
                f"{where}: {section}unknown option {name} (no backend has it: "
                f"{', '.join(DOCUMENTED_BACKENDS)})"
            )
        check(declared[0], value, where, section)
    fits = [b for b in DOCUMENTED_BACKENDS if own.keys() <= BACKENDS[b].keys()]
    if not fits:
        owners = {n: [b for b in DOCUMENTED_BACKENDS if n in BACKENDS[b]] for n in own}
        raise ConfigError(
            f"{where}: {section}mixes the options of different backends: "
            + ", ".join(f"{n} ({' or '.join(b)})" for n, b in owners.items())
        )
    return fits


def _cluster(s: Settings, name: str, catalog: set[str] | None) -> SectionCheck:
    section = f"[clusters.{name}]"
    table = s.cluster_options(name)  # a key that is not a cluster setting is refused
    note = None
    if catalog is not None and name not in catalog:
        note = "no cluster of this name in the catalog"
    return _checked(section, [], table, note)


def _checked(
    section: str, backends: list[str], table: Mapping[str, Any], note: str | None
) -> SectionCheck:
    """The result for a table whose options passed: its encryption keys read."""
    done = SectionCheck(section, backends, masked(table), note=note)
    if any(k.startswith("encryption") for k in table):
        from pgharbor import crypto

        ring = crypto.check_section(table, section)
        if ring is not None:
            writes = ring.current.id if ring.current else None
            done.keys = [
                f"{k.id} ({k.source}, {'writes' if k.id == writes else 'reads only'})"
                for k in ring.keys.values()
            ]
            done.encryption_required = ring.required
    return done


def _env_notes(s: Settings, env: Mapping[str, str]) -> list[str]:
    """PGHARBOR_* variables that are neither settings nor read otherwise (a misspelt
    override is ignored: say so), and empty ones."""
    settings_env = {k.env for k in SETTINGS.values()}
    named = {  # encryption_key_env = "PGHARBOR_..." names a key, not a setting
        v
        for table in (*s.targets.values(), *s.clusters.values())
        for k in ("encryption_key_env", "encryption_old_key_envs")
        for v in ([table[k]] if isinstance(table.get(k), str) else table.get(k) or [])
    }
    notes = []
    for var in sorted(v for v in env if v.startswith("PGHARBOR_")):
        if var in settings_env and not env[var]:
            notes.append(f"environment variable {var} is empty: ignored")
        elif var not in settings_env and var not in OTHER_ENV and var not in named:
            notes.append(f"environment variable {var} is not a pgharbor setting: ignored")
    return notes


def _mode_notes(s: Settings) -> list[str]:
    """A config file holding a secret should be readable by its owner only."""
    from pgharbor.catalog.urls import strip_password

    if not s.config_file:
        return []
    secrets = [
        f"[{section}.{name}] {key}"
        for section, tables in (("targets", s.targets), ("clusters", s.clusters))
        for name, table in tables.items()
        for key in table
        if is_secret(key)
    ]
    if s.catalog and s.sources.get("catalog", "").startswith("config"):
        secrets += ["catalog (its password)"] if strip_password(s.catalog)[1] else []
    try:
        mode = stat.S_IMODE(os.stat(s.config_file).st_mode)
    except OSError:
        return []
    if not secrets or not mode & 0o077:
        return []
    return [
        f"config file {s.config_file} holds a secret ({secrets[0]}) but its mode is "
        f"{mode:04o}: chmod 600 {s.config_file}"
    ]
