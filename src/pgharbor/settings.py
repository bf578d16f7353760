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


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return tidy_path(os.path.join(base, "pgharbor"))


class Settings(FrozenRecord):
    """Paths are strings: ``state_dir`` always set (tidied like a pathlib path), and
    ``config_file`` as given. ``replace()`` gives a copy with some fields changed."""

    __slots__ = (  # noqa: RUF023
        "catalog",
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


def _number(name: str, value: Any, kind: type, low: float, high: float) -> Any:
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not low <= v <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {v}")
    return v


# every setting a config file may hold: the fields, except where the file itself is
_KNOWN = frozenset(Settings.__slots__) - {"config_file"}


def load_settings(
    *, catalog: str | None = None, config: str | None = None, env: dict[str, str] | None = None
) -> Settings:
    """Build settings: defaults < config file < environment < command-line options."""
    env = dict(os.environ) if env is None else env
    config = config or env.get("PGHARBOR_CONFIG")
    raw: dict[str, Any] = {}
    config_path: str | None = None
    if config:
        config_path = config
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
            raise ConfigError(
                f"config file {config}: unknown setting(s) {', '.join(sorted(unknown))}"
            )
    for key, var in (
        ("catalog", "PGHARBOR_CATALOG"),
        ("state_dir", "PGHARBOR_STATE_DIR"),
        ("compression", "PGHARBOR_COMPRESSION"),
        ("compression_level", "PGHARBOR_COMPRESSION_LEVEL"),
    ):
        if env.get(var):
            raw[key] = env[var]
    if catalog:
        raw["catalog"] = catalog
    compression = str(raw.get("compression", "zstd"))
    if compression not in COMPRESSIONS:
        raise ConfigError(
            f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}"
        )
    for section in ("targets", "clusters"):
        value = raw.get(section, {})
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(f"[{section}.NAME] sections must be tables")
    state_dir = (
        tidy_path(os.path.expanduser(str(raw["state_dir"])))
        if raw.get("state_dir")
        else default_state_dir()
    )
    return Settings(
        catalog=str(raw["catalog"]) if raw.get("catalog") else None,
        config_file=config_path,
        state_dir=state_dir,
        compression=compression,
        compression_level=_number(
            "compression_level", raw.get("compression_level", 3), int, -7, 22
        ),
        catalog_timeout=_number("catalog_timeout", raw.get("catalog_timeout", 3), float, 0.1, 600),
        target_timeout=_number("target_timeout", raw.get("target_timeout", 10), float, 0.1, 3600),
        async_workers=_number("async_workers", raw.get("async_workers", 0), int, 0, 64),
        async_wait=_number("async_wait", raw.get("async_wait", 60), float, 0.1, 3600),
        async_idle_exit=_number("async_idle_exit", raw.get("async_idle_exit", 60), float, 1, 86400),
        prefetch_depth=_number("prefetch_depth", raw.get("prefetch_depth", 8), int, 0, 256),
        prefetch_workers=_number("prefetch_workers", raw.get("prefetch_workers", 4), int, 1, 64),
        prefetch_idle_exit=_number(
            "prefetch_idle_exit", raw.get("prefetch_idle_exit", 30), float, 1, 86400
        ),
        targets=raw.get("targets", {}),
        clusters=raw.get("clusters", {}),
    )
