"""One declarative settings schema: TOML file + environment overrides, validated, passed
in explicitly. Cheap to import (os only): the archive hot path loads it.

Example config file::

    catalog = "sqlite:////var/lib/pgharbor/catalog.db"
    state_dir = "/var/lib/postgresql/.pgharbor"
    compression = "zstd"        # or "none"
    compression_level = 3
    catalog_timeout = 3         # seconds to reach the catalog before using the local cache
    target_timeout = 10         # seconds a target may take before it is skipped
    async_workers = 0           # async archiving: parallel pushes (0: one per core, at least 2)
    async_wait = 60             # seconds archive_command waits for the resident pusher
    async_idle_exit = 60        # seconds without ready WAL before the pusher exits
    prefetch_depth = 8          # segments wal fetch keeps ahead of replay (0: off)
    prefetch_workers = 4        # parallel prefetch downloads
    prefetch_idle_exit = 30     # seconds without a new request before the prefetcher exits

    [targets.s3-eu]             # per-target settings, never stored in the catalog
    endpoint_url = "https://s3.example.net"

    [clusters.main]             # per-cluster settings
    encryption_key_file = "/etc/pgharbor/main.key"   # see pgharbor.crypto
"""

from __future__ import annotations

import os

from pgharbor.errors import ConfigError
from pgharbor.plain import FrozenRecord, tidy_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

COMPRESSIONS = ("zstd", "none")


# option names that hold a credential, in [targets.NAME] (S3 keys and tokens) or anywhere
SECRET_WORDS = ("password", "secret", "token", "passphrase", "access_key")


def is_secret(name: str) -> bool:
    return any(w in name.lower() for w in SECRET_WORDS)


def masked(options: dict[str, Any]) -> dict[str, Any]:
    """A table of options with the values of secret ones replaced by ``***``."""
    return {k: "***" if is_secret(k) else v for k, v in options.items()}


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return tidy_path(os.path.join(base, "pgharbor"))


class Settings(FrozenRecord):
    """Paths are strings: ``state_dir`` always set (tidied like a pathlib path), and
    ``config_file`` as given. ``catalog_source`` says where ``catalog`` came from:
    ``"config"`` (the config file), ``"env"``, ``"option"`` (--catalog), or None (built
    in code). ``replace()`` gives a copy with some fields changed. The repr masks
    secrets: the catalog's password and secret options of the tables."""

    __slots__ = (  # noqa: RUF023
        "catalog",
        "catalog_source",
        "config_file",
        "state_dir",
        "compression",
        "compression_level",
        "catalog_timeout",
        "target_timeout",
        "async_workers",
        "async_wait",
        "async_idle_exit",
        "prefetch_depth",
        "prefetch_workers",
        "prefetch_idle_exit",
        "targets",
        "clusters",
    )
    catalog: Final[str | None]
    catalog_source: Final[str | None]
    config_file: Final[str | None]
    state_dir: Final[str]
    compression: Final[str]
    compression_level: Final[int]
    catalog_timeout: Final[float]
    target_timeout: Final[float]
    async_workers: Final[int]
    async_wait: Final[float]
    async_idle_exit: Final[float]
    prefetch_depth: Final[int]
    prefetch_workers: Final[int]
    prefetch_idle_exit: Final[float]
    targets: Final[dict[str, dict[str, Any]]]
    clusters: Final[dict[str, dict[str, Any]]]

    def __init__(
        self,
        catalog: str | None = None,
        catalog_source: str | None = None,
        config_file: str | None = None,
        state_dir: str | None = None,
        compression: str = "zstd",
        compression_level: int = 3,
        catalog_timeout: float = 3.0,
        target_timeout: float = 10.0,
        async_workers: int = 0,
        async_wait: float = 60.0,
        async_idle_exit: float = 60.0,
        prefetch_depth: int = 8,
        prefetch_workers: int = 4,
        prefetch_idle_exit: float = 30.0,
        targets: dict[str, dict[str, Any]] | None = None,
        clusters: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.catalog = catalog
        self.catalog_source = catalog_source
        self.config_file = config_file
        self.state_dir = default_state_dir() if state_dir is None else state_dir
        self.compression = compression
        self.compression_level = compression_level
        self.catalog_timeout = catalog_timeout
        self.target_timeout = target_timeout
        self.async_workers = async_workers
        self.async_wait = async_wait
        self.async_idle_exit = async_idle_exit
        self.prefetch_depth = prefetch_depth
        self.prefetch_workers = prefetch_workers
        self.prefetch_idle_exit = prefetch_idle_exit
        self.targets = {} if targets is None else targets
        self.clusters = {} if clusters is None else clusters

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
        """A copy with ``changes`` applied (as dataclasses.replace did)."""
        return Settings(**{**self.as_dict(), **changes})

    def target_options(self, name: str) -> dict[str, Any]:
        """The storage backend's options (encryption settings are not the backend's)."""
        opts = {
            k: v for k, v in self.targets.get(name, {}).items() if not k.startswith("encryption")
        }
        opts.setdefault("timeout", self.target_timeout)
        return opts

    def cluster_options(self, name: str) -> dict[str, Any]:
        return dict(self.clusters.get(name, {}))

    def encryption_configured(self, cluster: str, target: str | None = None) -> bool:
        """Whether the cluster's or the target's section has any encryption setting: when
        neither has, pgharbor.crypto (not imported otherwise) has no keys to give."""
        tables = [self.clusters.get(cluster, {})]
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


# numeric settings: (type, lowest, highest). An int setting takes an int (not a bool,
# not 3.9); a float setting an int or a float (not a bool); from the environment, the
# text of one ("3" for an int, "2.5" for a float)
_NUMBERS: dict[str, tuple[type, float, float]] = {
    "compression_level": (int, -7, 22),
    "catalog_timeout": (float, 0.1, 600),
    "target_timeout": (float, 0.1, 3600),
    "async_workers": (int, 0, 64),
    "async_wait": (float, 0.1, 3600),
    "async_idle_exit": (float, 1, 86400),
    "prefetch_depth": (int, 0, 256),
    "prefetch_workers": (int, 1, 64),
    "prefetch_idle_exit": (float, 1, 86400),
}
_STRINGS = ("catalog", "state_dir", "compression")
_ENV = (
    ("catalog", "PGHARBOR_CATALOG"),
    ("state_dir", "PGHARBOR_STATE_DIR"),
    ("compression", "PGHARBOR_COMPRESSION"),
    ("compression_level", "PGHARBOR_COMPRESSION_LEVEL"),
)
# every setting a config file may hold: the fields, except where the file itself is and
# where the catalog came from
_KNOWN = frozenset(Settings.__slots__) - {"config_file", "catalog_source"}


def _shown(value: Any) -> str:
    """A wrong value in a message: numbers and booleans as they are, anything else by
    its kind only (a misplaced string may be a secret)."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return repr(value)
    kinds: dict[type, str] = {str: "a string", list: "an array", dict: "a table"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _number(name: str, value: Any, where: str) -> int | float:
    kind, low, high = _NUMBERS[name]
    if isinstance(value, str) and where.startswith("environment"):
        try:
            value = kind(value)
        except ValueError:
            raise ConfigError(
                f"{where}: {name} must be {'an integer' if kind is int else 'a number'}, "
                f"got {value!r}"
            ) from None
    if type(value) is not int and not (kind is float and type(value) is float):
        raise ConfigError(
            f"{where}: {name} must be {'an integer' if kind is int else 'a number'}, "
            f"got {_shown(value)}"
        )
    if not low <= value <= high:
        raise ConfigError(f"{where}: {name} must be between {low:g} and {high:g}, got {value}")
    return kind(value)  # type: ignore[no-any-return]


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
    unknown = set(raw) - _KNOWN
    if unknown:
        raise ConfigError(f"config file {config}: unknown setting(s) {', '.join(sorted(unknown))}")
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
    for key, var in _ENV:
        if env.get(var):
            raw[key], where[key] = env[var], f"environment variable {var}"
    if catalog:
        raw["catalog"], where["catalog"] = catalog, "--catalog"
    values: dict[str, Any] = {}
    for key in _STRINGS:
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{where[key]}: {key} must be a string, got {_shown(raw[key])}")
        if raw.get(key):
            values[key] = raw[key]
    for key in _NUMBERS.keys() & raw.keys():
        values[key] = _number(key, raw[key], where[key])
    if values.get("compression", "zstd") not in COMPRESSIONS:
        raise ConfigError(
            f"{where['compression']}: compression must be one of {', '.join(COMPRESSIONS)}, "
            f"got {values['compression']!r}"
        )
    for section in ("targets", "clusters"):
        value = raw.get(section, {})
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(f"{where[section]}: [{section}.NAME] sections must be tables")
        values[section] = value
    if "state_dir" in values:
        values["state_dir"] = tidy_path(os.path.expanduser(values["state_dir"]))
    if "catalog" in values:
        came = where["catalog"]
        values["catalog_source"] = (
            "config" if came.startswith("config") else "option" if came == "--catalog" else "env"
        )
    return Settings(config_file=config or None, **values)
