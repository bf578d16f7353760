"""Every setting pgharbor reads, declared once: its name, kind, default, range or
choices, environment variable, one-line doc and whether it is a secret. Loading
(pgharbor.settings), checking (pgharbor.settings_check), the storage backends' options,
the encryption settings (pgharbor.crypto), ``pgharbor config check`` / ``config sample``
and docs/configuration.md (pgharbor.settings_doc) all derive from the tables here.

- ``SETTINGS``: the top-level keys of the config file; each has an environment variable
  ``PGHARBOR_<NAME>`` that wins over the file.
- ``BACKENDS``: the options of a ``[targets.NAME]`` table, per storage backend; those
  marked ``in_url`` may also be given in the target URL's query (never a secret).
- ``ENCRYPTION``: the keys of ``[clusters.NAME]``, also accepted in ``[targets.NAME]``.

Cheap to import (the archive hot path loads it): plain records, no typing, dataclasses
or re at run time.
"""

from __future__ import annotations

from pgharbor.plain import FrozenRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Final

# kinds of value, as messages and the reference name them
INT, NUMBER, TEXT, PATH, BOOL, SIZE, NAMES = (
    "integer",
    "number",
    "string",
    "path",
    "boolean",
    "size",
    "strings",
)
MiB = 1 << 20
GiB = 1 << 30


class Key(FrozenRecord):
    """One setting. ``default`` None: unset unless ``default_doc`` says how it is
    computed. ``low``/``high`` bound numbers and sizes (inclusive); ``choices`` the
    strings a text setting takes. ``env``: its environment variable (top-level keys).
    ``in_url``: a target option that may be given in the target URL's query.
    ``example``: a value for the sample config when there is no default."""

    __slots__ = (  # noqa: RUF023
        "name",
        "kind",
        "default",
        "doc",
        "low",
        "high",
        "choices",
        "secret",
        "env",
        "in_url",
        "default_doc",
        "example",
    )
    name: Final[str]
    kind: Final[str]
    default: Final[Any]
    doc: Final[str]
    low: Final[float | None]
    high: Final[float | None]
    choices: Final[tuple[str, ...]]
    secret: Final[bool]
    env: Final[str | None]
    in_url: Final[bool]
    default_doc: Final[str | None]
    example: Final[Any]

    def __init__(
        self,
        name: str,
        kind: str,
        default: Any,
        doc: str,
        *,
        low: float | None = None,
        high: float | None = None,
        choices: tuple[str, ...] = (),
        secret: bool = False,
        env: str | None = None,
        in_url: bool = False,
        default_doc: str | None = None,
        example: Any = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.default = default
        self.doc = doc
        self.low = low
        self.high = high
        self.choices = choices
        self.secret = secret
        self.env = env
        self.in_url = in_url
        self.default_doc = default_doc
        self.example = example


def _table(*keys: Key) -> dict[str, Key]:
    return {k.name: k for k in keys}


def _top(name: str, kind: str, default: Any, doc: str, **more: Any) -> Key:
    return Key(name, kind, default, doc, env=f"PGHARBOR_{name.upper()}", **more)


TARGET_TIMEOUT = 10.0

SETTINGS: Final = _table(
    _top(
        "catalog",
        TEXT,
        None,
        "catalog URL: sqlite:////PATH.db or postgresql://USER@HOST:PORT/DB (keep its "
        "password in ~/.pgpass; shown as ***)",
        example="sqlite:////var/lib/pgharbor/catalog.db",
    ),
    _top(
        "state_dir",
        PATH,
        None,
        "local state of this host: the placement cache, the catalog journal, spools",
        default_doc="$XDG_STATE_HOME/pgharbor, else ~/.local/state/pgharbor",
        example="/var/lib/postgresql/.pgharbor",
    ),
    _top(
        "compression",
        TEXT,
        "zstd",
        "compression of WAL files and backup chunks",
        choices=("zstd", "none"),
    ),
    _top("compression_level", INT, 3, "zstd level", low=-7, high=22),
    _top(
        "catalog_timeout",
        NUMBER,
        3.0,
        "seconds to reach the catalog before wal push/fetch use the local cache",
        low=0.1,
        high=600,
    ),
    _top(
        "target_timeout",
        NUMBER,
        TARGET_TIMEOUT,
        "seconds a target may take before it is skipped (a target's own timeout wins)",
        low=0.1,
        high=3600,
    ),
    _top(
        "async_workers",
        INT,
        0,
        "async archiving: parallel pushes (0: one per core, at least 2)",
        low=0,
        high=64,
    ),
    _top(
        "async_wait",
        NUMBER,
        60.0,
        "seconds archive_command waits for the resident pusher",
        low=0.1,
        high=3600,
    ),
    _top(
        "async_idle_exit",
        NUMBER,
        60.0,
        "seconds without ready WAL before the resident pusher exits",
        low=1,
        high=86400,
    ),
    _top(
        "prefetch_depth",
        INT,
        8,
        "segments wal fetch keeps ahead of replay (0: no prefetch)",
        low=0,
        high=256,
    ),
    _top("prefetch_workers", INT, 4, "parallel prefetch downloads", low=1, high=64),
    _top(
        "prefetch_idle_exit",
        NUMBER,
        30.0,
        "seconds without a new request before the prefetcher exits",
        low=1,
        high=86400,
    ),
    _top(
        "verify_grace",
        NUMBER,
        900.0,
        "verify: seconds a missing WAL segment stays pending (maybe in flight) before it "
        "counts as lost",
        low=0,
        high=30 * 86400,
    ),
    _top(
        "verify_content_period",
        NUMBER,
        7 * 86400.0,
        "verify: seconds within which every archived WAL file is read back and checked, a "
        "slice per run (0: all of them every run)",
        low=0,
        high=366 * 86400,
    ),
    _top(
        "log_file",
        PATH,
        None,
        "pgharbor serve: append the log to this file (default: stderr, i.e. the journal)",
        example="/var/log/pgharbor/serve.log",
    ),
    _top(
        "scheduler_max_jobs", INT, 4, "pgharbor serve: jobs one node runs at once", low=1, high=256
    ),
    _top(
        "scheduler_max_backups",
        INT,
        2,
        "pgharbor serve: backups running at once in the whole fleet",
        low=1,
        high=10000,
    ),
    _top(
        "scheduler_poll",
        NUMBER,
        5.0,
        "pgharbor serve: seconds between two ticks (schedules, claims, heartbeats)",
        low=0.1,
        high=3600,
    ),
    _top(
        "scheduler_lease",
        NUMBER,
        60.0,
        "pgharbor serve: seconds a job's lease lasts (renewed every third of it); another "
        "node re-runs a job whose lease ran out",
        low=1,
        high=86400,
    ),
    _top(
        "scheduler_grace",
        NUMBER,
        3600.0,
        "pgharbor serve: a fire found later than this many seconds (all nodes were down) is "
        "recorded as missed instead of run",
        low=0,
        high=31 * 86400,
    ),
    _top(
        "scheduler_stop_timeout",
        NUMBER,
        60.0,
        "pgharbor serve: seconds SIGTERM waits for running jobs before handing them back",
        low=0,
        high=86400,
    ),
    _top(
        "scheduler_max_attempts",
        INT,
        3,
        "pgharbor serve: claims of a job whose node keeps dying before it fails",
        low=1,
        high=100,
    ),
    _top(
        "metrics_cache",
        NUMBER,
        10.0,
        "pgharbor serve: seconds GET /metrics reuses its values (target probes: 6 times as long)",
        low=0,
        high=3600,
    ),
    _top(
        "events_interval",
        NUMBER,
        60.0,
        "pgharbor serve: seconds between two runs of every check that record state changes "
        "as events (0: never)",
        low=0,
        high=86400,
    ),
    _top(
        "web_session_ttl",
        NUMBER,
        8 * 3600.0,
        "pgharbor serve: seconds a dashboard sign-in lasts (the session is then refused)",
        low=60,
        high=31 * 86400,
    ),
    _top(
        "web_secret_file",
        PATH,
        None,
        "pgharbor serve: the file of the key that signs session cookies (made once, mode "
        "0600, if absent; give every node of a fleet the same file to share sessions)",
        default_doc="state_dir/web-secret",
        example="/var/lib/pgharbor/web-secret",
    ),
    _top(
        "web_signin_limit",
        INT,
        5,
        "pgharbor serve: failed sign-ins of one user, or from one client, within "
        "web_signin_window before further attempts are refused",
        low=1,
        high=1000,
    ),
    _top(
        "web_signin_window",
        NUMBER,
        900.0,
        "pgharbor serve: seconds the failed sign-ins of web_signin_limit are counted over",
        low=1,
        high=86400,
    ),
    _top(
        "metrics_anonymous",
        BOOL,
        True,
        "pgharbor serve: GET /metrics needs no credentials (false: a token of any scope, "
        "as Authorization: Bearer)",
    ),
    _top(
        "drill_dir",
        PATH,
        None,
        "restore drills: the folder their scratch copies are made in (one fresh folder "
        "per drill; it needs room for the backup's data plus the WAL it replays)",
        default_doc="state_dir/drills",
        example="/var/lib/pgharbor/drills",
    ),
    _top(
        "drill_timeout",
        NUMBER,
        3600.0,
        "restore drills: seconds the scratch server may take to recover and promote",
        low=1,
        high=7 * 86400,
    ),
)
SECTIONS = ("targets", "clusters")  # the tables of tables: [targets.NAME], [clusters.NAME]
# environment variables pgharbor reads that are not settings
OTHER_ENV = {
    "PGHARBOR_CONFIG": "the config file (as --config)",
    "PGHARBOR_VERBOSE": "wal push/fetch log what they do (as -v)",
    "PGHARBOR_DEBUG": "print the traceback of an internal error",
    "PGHARBOR_PG_BIN": "folder of the PostgreSQL programs (pg_basebackup, pg_waldump)",
    "PGHARBOR_FAULT": "fault injection for tests (see pgharbor.faultpoint)",
    "PGHARBOR_FAULT_DIR": "fault injection for tests",
    "PGHARBOR_FAULT_WAIT": "fault injection for tests",
}

TIMEOUT = Key(
    "timeout",
    NUMBER,
    TARGET_TIMEOUT,
    "seconds for connecting and for each operation",
    low=0.1,
    high=3600,
    in_url=True,
    default_doc="target_timeout",
)
FILE: Final = _table(TIMEOUT)
SSH: Final = _table(
    Key(
        "key_file",
        PATH,
        None,
        "private key to log in with",
        in_url=True,
        default_doc="the SSH agent, then ~/.ssh/id_*",
        example="~/.ssh/id_ed25519",
    ),
    Key(
        "known_hosts", PATH, "~/.ssh/known_hosts", "host keys to trust (never learned)", in_url=True
    ),
    TIMEOUT,
)
S3: Final = _table(
    Key(
        "endpoint_url",
        TEXT,
        None,
        "the S3 service (MinIO, Ceph RGW, ...)",
        in_url=True,
        default_doc="AWS S3",
        example="https://s3.example.net",
    ),
    Key(
        "region",
        TEXT,
        None,
        "the bucket's region",
        in_url=True,
        default_doc="from the AWS configuration",
        example="eu-west-1",
    ),
    Key(
        "addressing_style",
        TEXT,
        "auto",
        "bucket in the path or in the host name",
        choices=("path", "virtual", "auto"),
        in_url=True,
    ),
    Key(
        "profile",
        TEXT,
        None,
        "AWS profile of ~/.aws/config to use",
        in_url=True,
        default_doc="the default chain",
        example="archive",
    ),
    TIMEOUT,
    Key(
        "multipart_threshold",
        SIZE,
        8 * MiB,
        "objects this large or larger are uploaded in parts",
        low=5 * MiB,
        high=5 * GiB,
        in_url=True,
    ),
    Key(
        "multipart_chunksize",
        SIZE,
        8 * MiB,
        "size of each part",
        low=5 * MiB,
        high=5 * GiB,
        in_url=True,
    ),
    Key(
        "access_key_id",
        TEXT,
        None,
        "credential (else the AWS chain: environment, ~/.aws, instance metadata)",
        secret=True,
        example="AKIA...",
    ),
    Key(
        "secret_access_key",
        TEXT,
        None,
        "credential (keep the config file mode 0600)",
        secret=True,
        example="...",
    ),
    Key("session_token", TEXT, None, "temporary credential", secret=True, example="..."),
)
BACKENDS: Final = {"file": FILE, "ssh": SSH, "s3": S3, "memory": FILE}
DOCUMENTED_BACKENDS = ("file", "ssh", "s3")  # memory:// is for tests

ENCRYPTION: Final = _table(
    Key(
        "encryption_key_file",
        PATH,
        None,
        "master key that encrypts what is written (pgharbor key generate FILE makes one)",
        example="/etc/pgharbor/main.key",
    ),
    Key(
        "encryption_key_env",
        TEXT,
        None,
        "environment variable holding that key (instead of encryption_key_file)",
        example="MAIN_ARCHIVE_KEY",
    ),
    Key(
        "encryption_old_key_files",
        NAMES,
        None,
        "older keys, read only (key rotation)",
        example=["/etc/pgharbor/main-2025.key"],
    ),
    Key(
        "encryption_old_key_envs",
        NAMES,
        None,
        "environment variables holding older keys",
        example=["OLD_ARCHIVE_KEY"],
    ),
    Key(
        "encryption_required",
        BOOL,
        None,
        "refuse to read anything that is not encrypted",
        default_doc="true when a current key is set",
        example=True,
    ),
)
CLUSTER: Final = {
    **ENCRYPTION,
    **_table(
        Key(
            "drill_sql_file",
            PATH,
            None,
            "restore drills: SQL file run against the drilled copy; every query must "
            "return true (e.g. SELECT count(*) > 0 FROM orders)",
            example="/etc/pgharbor/c1-drill.sql",
        ),
        Key(
            "drill_target",
            TEXT,
            "end",
            "restore drills without a target option: the end of the archive, or a random "
            "LSN inside the newest timeline's recoverable window",
            choices=("end", "random"),
        ),
    ),
}

# option names that hold a credential anywhere, also in a table built in code
SECRET_WORDS = ("password", "secret", "token", "passphrase", "access_key")


def is_secret(name: str) -> bool:
    declared = S3.get(name)
    return (declared is not None and declared.secret) or any(
        w in name.lower() for w in SECRET_WORDS
    )


def masked(options: Mapping[str, Any]) -> dict[str, Any]:
    """A table of options with the values of secret ones replaced by ``***``."""
    return {k: "***" if is_secret(k) else v for k, v in options.items()}
